//! The public gRPC API: `Write`, `Admin` and (with the query language) `Query`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pharos_proto::v1::admin_server::Admin;
use pharos_proto::v1::query_server::Query;
use pharos_proto::v1::write_server::Write;
use pharos_proto::v1::*;
use pharos_raft::meta::{MetaCommand, MetaResponse};
use pharos_storage::{line_protocol, Precision, SmolStr};
use tonic::{Request, Response, Status};

use crate::auth::tokens::{new_secret, sha256_hex, TokenDoc, TokenRecord, TOKENS_DOC};
use crate::auth::{Access, Credentials, Role};
use crate::clock::now_ms;
use crate::error::WriteError;
use crate::ingest::{Batch, Source};
use crate::node::Node;
use crate::placement::NodeState;
use crate::rpc::fan_out;
use crate::shard_rpc::{execute_local, ShardRequest, ShardResponse, ShardStatus};

pub struct WriteService {
    pub node: Arc<Node>,
}

/// Converts API points and checks them against the limits (`Limits::check`, as every structured point is).
/// A point without a timestamp (0) is stamped now.
pub fn convert_points(node: &Node, req: WriteRequest) -> Result<Vec<pharos_storage::Point>, WriteError> {
    let now = now_ms();
    let points: Vec<pharos_storage::Point> = req
        .points
        .into_iter()
        .map(|p| {
            let mut tags: Vec<(SmolStr, SmolStr)> =
                p.tags.into_iter().map(|t| (SmolStr::from(t.key), SmolStr::from(t.value))).collect();
            tags.sort();
            pharos_storage::Point {
                measurement: p.measurement.into(),
                tags,
                fields: p.fields.into_iter().map(|f| (SmolStr::from(f.key), f.value)).collect(),
                timestamp: if p.timestamp_ms == 0 { now } else { p.timestamp_ms },
            }
        })
        .collect();
    node.ingest.check(&points).map_err(|(i, why)| WriteError::BadRequest(format!("point {i}: {why}")))?;
    Ok(points)
}

#[tonic::async_trait]
impl Write for WriteService {
    /// Points and line protocol in one request, all or nothing: a bad point or line refuses the whole request.
    async fn write(&self, req: Request<WriteRequest>) -> Result<Response<WriteResponse>, Status> {
        let node = &self.node;
        let refuse = |e: WriteError| {
            node.ingest.count_refused(Source::Grpc, e.code());
            e.grpc_status()
        };
        let mut req = req.into_inner();
        let lp = std::mem::take(&mut req.line_protocol);
        let precision = req.precision.clone();
        let mut points = convert_points(node, req).map_err(refuse)?;
        // Points carry milliseconds; line protocol the request's precision.
        let mut unit = None;
        if !lp.is_empty() {
            let p = Precision::parse(&precision).ok_or_else(|| {
                refuse(WriteError::BadRequest(format!("unknown precision {precision:?}: use ns, us, ms or s")))
            })?;
            unit = Some(p);
            let now_ns = now_ms().saturating_mul(1_000_000);
            let parsed = line_protocol::parse(lp.as_bytes(), p, now_ns, &node.config.limits.line())
                .map_err(|e| refuse(WriteError::BadRequest(e.to_string())))?;
            points.extend(parsed);
        }
        if points.len() > node.config.limits.max_points_per_request {
            return Err(refuse(WriteError::BadRequest(format!(
                "more than {} points in one request",
                node.config.limits.max_points_per_request
            ))));
        }
        let batch = Batch { source: Source::Grpc, precision: unit, points, then_invalid: false };
        let w = node.ingest.ingest(batch).await.map_err(|e| e.grpc_status())?;
        if let Some(msg) = w.refusal {
            return Err(Status::invalid_argument(msg));
        }
        Ok(Response::new(WriteResponse { points_written: w.outcome.points, samples_written: w.outcome.samples }))
    }
}

pub struct AdminService {
    pub node: Arc<Node>,
}

impl AdminService {
    /// A stored configuration as this caller may see it: whole for those who may change it, else with its
    /// secrets replaced.
    fn shown<T>(&self, req: &Request<T>, text: String) -> String {
        let principal =
            req.extensions().get::<crate::auth::Principal>().cloned().unwrap_or(crate::auth::Principal::Anyone);
        if text.is_empty() || self.node.auth.may_see_secrets(&principal) {
            text
        } else {
            pharos_promconf::redact::redact_yaml(&text)
        }
    }

    /// Changes the token list by compare-and-set on its version (again when another change won the race).
    async fn change_tokens<R>(&self, mut change: impl FnMut(&mut TokenDoc) -> Result<R, Status>) -> Result<R, Status> {
        for _ in 0..20 {
            let stored = self.node.meta.state().doc(TOKENS_DOC);
            let mut doc = TokenDoc::parse(&stored.bytes);
            let out = change(&mut doc)?;
            let cmd =
                MetaCommand::PutDoc { kind: TOKENS_DOC.into(), bytes: doc.to_bytes(), expect: Some(stored.version) };
            match self.node.client.meta_write(&cmd, META_WRITE_WITHIN).await {
                Ok(MetaResponse::Conflict(_)) => continue,
                Ok(MetaResponse::Rejected(why)) => return Err(Status::failed_precondition(why)),
                Ok(_) => return Ok(out),
                Err(e) => return Err(Status::unavailable(format!("storing the tokens: {}", crate::error::chain(&e)))),
            }
        }
        Err(Status::aborted("too many concurrent token changes; try again"))
    }

    async fn meta(&self, cmd: MetaCommand, what: &str) -> Result<(), Status> {
        match self.node.client.meta_write(&cmd, META_WRITE_WITHIN).await {
            Ok(MetaResponse::Ok | MetaResponse::Added(_)) => Ok(()),
            Ok(MetaResponse::Rejected(why) | MetaResponse::Conflict(why)) => Err(Status::failed_precondition(why)),
            Err(e) => Err(Status::unavailable(format!("storing {what}: {}", crate::error::chain(&e)))),
        }
    }
}

fn token_info(t: &TokenRecord) -> TokenInfo {
    TokenInfo {
        name: t.name.clone(),
        role: t.role.as_str().into(),
        created_ms: t.created_ms,
        expires_ms: t.expires_ms.unwrap_or(0),
    }
}

fn shard_info(st: ShardStatus, replicas: Vec<u64>) -> ShardInfo {
    ShardInfo {
        shard: st.shard,
        replicas: if st.voters.is_empty() { replicas } else { st.voters },
        leader: st.leader.unwrap_or(0),
        applied_index: st.applied,
        last_log_index: st.last_log,
        lag: st.lag.into_iter().collect(),
        term: st.term,
        purged_index: st.purged,
        reporter: st.reporter,
    }
}

/// This node's own report: itself with its addresses, each replica it holds (a leader's with the lag of
/// every follower), and the meta group as it sees it.
pub async fn local_status(node: &Node) -> StatusResponse {
    let mut shards = Vec::new();
    for r in node.replicas.all() {
        let status = execute_local(&node.replicas, &node.metrics, r.shard, &ShardRequest::Status, false).await;
        if let Ok(ShardResponse::Status(st)) = status {
            shards.push(shard_info(st, Vec::new()));
        }
    }
    let meta_m = node.meta.raft.metrics().borrow().clone();
    let meta = ShardInfo {
        shard: u32::MAX,
        replicas: meta_m.membership_config.membership().voter_ids().collect(),
        leader: meta_m.current_leader.unwrap_or(0),
        applied_index: meta_m.last_applied.map(|l| l.index).unwrap_or(0),
        last_log_index: meta_m.last_log_index.unwrap_or(0),
        lag: Default::default(),
        term: meta_m.current_term,
        purged_index: meta_m.purged.map(|p| p.index).unwrap_or(0),
        reporter: node.id,
    };
    let membership = meta_m.membership_config.membership();
    let meta_role = if membership.voter_ids().any(|v| v == node.id) {
        "voter"
    } else if membership.learner_ids().any(|v| v == node.id) {
        "learner"
    } else {
        ""
    };
    let dir = node.config.data_dir.clone();
    let disk_bytes = tokio::task::spawn_blocking(move || allocated_bytes(&dir)).await.unwrap_or(0);
    let me = NodeInfo {
        id: node.id,
        grpc_addr: node.config.advertised_grpc(),
        http_addr: node.config.http_addr.to_string(),
        reachable: true,
        meta_role: meta_role.into(),
        disk_bytes,
        ..Default::default()
    };
    let seen = crate::rebalance::seen(&node.meta.state()).0.into_iter().collect();
    let replication_factor = node.config.replication_factor as u32;
    StatusResponse { node_id: node.id, nodes: vec![me], shards, meta: Some(meta), seen, replication_factor }
}

/// The cluster as every node reports it, whichever node is asked: each known node is asked for its own
/// report (answering within two seconds is what `reachable` means, and brings its HTTP address), and each
/// shard is shown as its leader reports it (with replication lag), else as its most advanced replica does.
pub async fn cluster_status(node: &Arc<Node>) -> StatusResponse {
    const ASK_WITHIN: Duration = Duration::from_secs(2);
    let known = node.client.peers().known();
    let reports = fan_out(known.iter().map(|(id, a)| (*id, a.grpc.clone())), |(id, grpc)| {
        let (node, id, grpc) = (node.clone(), *id, grpc.clone());
        async move {
            if id == node.id {
                return Some(local_status(&node).await);
            }
            let ask = async {
                let mut c = node.client.peers().admin(&grpc).ok()?;
                Some(c.status(StatusRequest { local: true }).await.ok()?.into_inner())
            };
            tokio::time::timeout(ASK_WITHIN, ask).await.ok().flatten()
        }
    })
    .await;
    let answered: BTreeMap<u64, StatusResponse> =
        reports.into_iter().filter_map(|((id, _), r)| Some((id, r?))).collect();
    let placement = node.meta.placement();
    let mut best: BTreeMap<u32, ShardInfo> = BTreeMap::new();
    for sh in answered.values().flat_map(|r| r.shards.iter()) {
        // The newest term first (a deposed leader still answering must not win over a replica that saw the
        // next election), then a leader's own report (it carries lag), then the most advanced replica.
        let rank = |i: &ShardInfo| (i.term, i.leader != 0 && i.leader == i.reporter, i.applied_index);
        if best.get(&sh.shard).is_none_or(|b| rank(sh) > rank(b)) {
            best.insert(sh.shard, sh.clone());
        }
    }
    let shards: Vec<ShardInfo> = (0..node.router.shards())
        .map(|s| {
            let replicas = placement.get(s as usize).cloned().unwrap_or_default();
            match best.remove(&s) {
                Some(mut i) => {
                    if i.replicas.is_empty() {
                        i.replicas = replicas;
                    }
                    i
                }
                None => ShardInfo { shard: s, replicas, ..Default::default() },
            }
        })
        .collect();
    let meta = answered.get(&node.id).and_then(|r| r.meta.clone());
    let (states, _) = crate::rebalance::NodesDoc::read(&node.meta.state());
    let nodes = known
        .into_iter()
        .map(|(id, a)| {
            let own = answered.get(&id).and_then(|r| r.nodes.iter().find(|n| n.id == id));
            NodeInfo {
                id,
                grpc_addr: a.grpc,
                http_addr: own.map(|n| n.http_addr.clone()).unwrap_or(a.http),
                reachable: answered.contains_key(&id),
                state: states.state_of(id).as_str().into(),
                replicas: shards.iter().filter(|s: &&ShardInfo| s.replicas.contains(&id)).count() as u32,
                leaders: shards.iter().filter(|s: &&ShardInfo| s.leader == id).count() as u32,
                disk_bytes: own.map(|n| n.disk_bytes).unwrap_or(0),
                meta_role: own.map(|n| n.meta_role.clone()).unwrap_or_default(),
            }
        })
        .collect();
    let seen = crate::rebalance::seen(&node.meta.state()).0.into_iter().collect();
    let replication_factor = node.config.replication_factor as u32;
    StatusResponse { node_id: node.id, nodes, shards, meta, seen, replication_factor }
}

/// Bytes a directory's files take on disk: allocated blocks, as `du` and `df` count them.
fn allocated_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => allocated_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

#[tonic::async_trait]
impl Admin for AdminService {
    /// Series statistics of the cluster (see [`crate::cardinality::explore`]).
    async fn cardinality(&self, req: Request<CardinalityRequest>) -> Result<Response<CardinalityResponse>, Status> {
        let r = req.into_inner();
        let top = if r.top == 0 { 10 } else { r.top.min(10_000) };
        let window = if r.window_ms <= 0 { 3_600_000 } else { r.window_ms };
        let since = now_ms() - window;
        let e = crate::cardinality::explore(&self.node.client, self.node.router.shards(), since, top)
            .await
            .map_err(|e| Status::unavailable(format!("{e}; try again")))?;
        let entry =
            |name: String, series: u64, created: u64, values: u64| CardinalityEntry { name, series, created, values };
        Ok(Response::new(CardinalityResponse {
            series: e.series,
            measurements: e.measurements.into_iter().map(|(m, n, c)| entry(m, n, c, 0)).collect(),
            tag_keys: e.labels.into_iter().map(|(k, d, n)| entry(k, n, 0, d)).collect(),
            tag_pairs: e.pairs.into_iter().map(|(k, v, n)| entry(format!("{k}={v}"), n, 0, 0)).collect(),
            created_since_ms: e.since_ms.unwrap_or(0),
        }))
    }

    type BackupStream = tokio_stream::wrappers::ReceiverStream<Result<BackupChunk, Status>>;

    /// One part of a backup, from this node when it leads the group (see [`crate::backup::serve`]).
    async fn backup(&self, req: Request<BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        let who = req.extensions().get::<crate::auth::Principal>().map(|p| p.name().to_string()).unwrap_or_default();
        let req = req.into_inner();
        tracing::info!(by = %who, meta = req.meta, shard = req.shard, "backup requested");
        let rx = crate::backup::serve(&self.node, req).await?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// Read-only, answered without a token (as every read of the Admin API is until roles exist).
    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        if req.get_ref().local {
            return Ok(Response::new(local_status(&self.node).await));
        }
        Ok(Response::new(cluster_status(&self.node).await))
    }

    /// Validates a rule file (every query must plan) and, unless `dry_run`, stores it in the meta group.
    async fn apply_rules(&self, req: Request<ApplyRulesRequest>) -> Result<Response<ApplyRulesResponse>, Status> {
        let dry_run = req.get_ref().dry_run;
        let req = req.into_inner();
        let (groups, rules) = crate::alerting::validate(None, &req.text).map_err(Status::invalid_argument)?;
        let version = if dry_run {
            self.node.meta.state().rules.version
        } else {
            self.meta(MetaCommand::SetRules { text: req.text }, "the rules").await?;
            self.node.meta.state().rules.version
        };
        Ok(Response::new(ApplyRulesResponse { version, groups: groups as u32, rules: rules as u32 }))
    }

    async fn get_rules(&self, _req: Request<GetRulesRequest>) -> Result<Response<GetRulesResponse>, Status> {
        let r = self.node.meta.state().rules.clone();
        Ok(Response::new(GetRulesResponse { text: r.text, version: r.version }))
    }

    /// Every alert instance of every shard (read from each shard's leader).
    async fn alerts(&self, req: Request<AlertsRequest>) -> Result<Response<AlertsResponse>, Status> {
        let states = req.into_inner().states;
        let mut alerts = crate::alerting::list_alerts(&self.node.client, self.node.router.shards())
            .await
            .map_err(Status::unavailable)?;
        if !states.is_empty() {
            alerts.retain(|a| states.iter().any(|s| s.eq_ignore_ascii_case(&a.state)));
        }
        Ok(Response::new(AlertsResponse { alerts }))
    }

    /// Validates a routing configuration and, unless `dry_run`, stores it in the meta group.
    async fn apply_routing(&self, req: Request<ApplyRoutingRequest>) -> Result<Response<ApplyRoutingResponse>, Status> {
        let dry_run = req.get_ref().dry_run;
        let req = req.into_inner();
        let receivers = crate::alerting::validate_routing(None, &req.text).map_err(Status::invalid_argument)?;
        if !dry_run {
            self.meta(MetaCommand::SetRouting { text: req.text }, "the routing configuration").await?;
        }
        let version = self.node.meta.state().routing.version;
        Ok(Response::new(ApplyRoutingResponse { version, receivers: receivers as u32 }))
    }

    /// The routing configuration; with its secrets replaced for callers who may not change it.
    async fn get_routing(&self, req: Request<GetRoutingRequest>) -> Result<Response<GetRoutingResponse>, Status> {
        let r = self.node.meta.state().routing.clone();
        Ok(Response::new(GetRoutingResponse { text: self.shown(&req, r.text), version: r.version }))
    }

    async fn add_silence(&self, req: Request<AddSilenceRequest>) -> Result<Response<AddSilenceResponse>, Status> {
        let info = req.into_inner().silence.ok_or_else(|| Status::invalid_argument("a silence is required"))?;
        let silence = crate::alerting::silence_from_proto(info, now_ms()).map_err(Status::invalid_argument)?;
        let json = serde_json::to_string(&silence).expect("silences serialize");
        self.meta(MetaCommand::PutSilence { id: silence.id.clone(), json }, "the silence").await?;
        Ok(Response::new(AddSilenceResponse { id: silence.id }))
    }

    async fn list_silences(
        &self,
        _req: Request<ListSilencesRequest>,
    ) -> Result<Response<ListSilencesResponse>, Status> {
        let now = now_ms();
        let silences = crate::alerting::silences(&self.node.meta)
            .iter()
            .map(|s| crate::alerting::silence_to_proto(s, now))
            .collect();
        Ok(Response::new(ListSilencesResponse { silences }))
    }

    async fn expire_silence(
        &self,
        req: Request<ExpireSilenceRequest>,
    ) -> Result<Response<ExpireSilenceResponse>, Status> {
        let id = req.into_inner().id;
        let mut silence = crate::alerting::silences(&self.node.meta)
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| Status::not_found(format!("no silence {id:?} (pharosctl silence list shows them)")))?;
        if silence.expire(now_ms()) {
            let json = serde_json::to_string(&silence).expect("silences serialize");
            self.meta(MetaCommand::PutSilence { id, json }, "the silence").await?;
        }
        Ok(Response::new(ExpireSilenceResponse {}))
    }

    /// Validates a scrape configuration and, unless `dry_run`, stores it in the meta group.
    async fn apply_scrape(&self, req: Request<ApplyScrapeRequest>) -> Result<Response<ApplyScrapeResponse>, Status> {
        let dry_run = req.get_ref().dry_run;
        let req = req.into_inner();
        let cfg = pharos_scrape::parse_config(&req.text).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !dry_run {
            self.meta(MetaCommand::SetScrape { text: req.text }, "the scrape configuration").await?;
        }
        let version = self.node.meta.state().scrape.version;
        Ok(Response::new(ApplyScrapeResponse { version, jobs: cfg.scrape_configs.len() as u32 }))
    }

    /// The scrape configuration; with its secrets replaced for callers who may not change it.
    async fn get_scrape(&self, req: Request<GetScrapeRequest>) -> Result<Response<GetScrapeResponse>, Status> {
        let r = self.node.meta.state().scrape.clone();
        Ok(Response::new(GetScrapeResponse { text: self.shown(&req, r.text), version: r.version }))
    }

    async fn targets(&self, req: Request<TargetsRequest>) -> Result<Response<TargetsResponse>, Status> {
        let s = &self.node.scraping;
        let targets = if req.into_inner().local {
            crate::scrape::local_targets(self.node.id, s)
        } else {
            crate::scrape::cluster_targets(&self.node.client, s).await
        };
        Ok(Response::new(TargetsResponse { targets }))
    }

    /// A node joining (`pharos server --join`): needs the admin token, like every cluster change.
    async fn add_node(&self, req: Request<AddNodeRequest>) -> Result<Response<StatusResponse>, Status> {
        let r = req.into_inner();
        if r.grpc_addr.is_empty() {
            return Err(Status::invalid_argument("a joining node must give its gRPC address"));
        }
        let addr = pharos_raft::NodeAddr { grpc: r.grpc_addr.clone(), http: r.http_addr.clone() };
        let state = self.node.meta.state();
        if r.fresh && crate::rebalance::seen(&state).0.contains(&r.node_id) {
            return Err(Status::already_exists(format!(
                "node {} has run in this cluster before, and this one's data directory is new: its data is lost. \
                 Take it out with `pharosctl node remove {} --dead`, then join with a new id (or no --node-id)",
                r.node_id, r.node_id
            )));
        }
        let joiner = r
            .formats
            .clone()
            .map_or_else(pharos_storage::formats::Formats::before_advertising, crate::join::formats_from_proto);
        if let Some(why) = crate::rebalance::join_refusal(&state, &joiner, r.node_id) {
            return Err(Status::failed_precondition(format!("this node cannot join: {why}")));
        }
        if r.node_id != 0 && state.nodes.get(&r.node_id).is_some_and(|a| a.grpc == r.grpc_addr) && !r.reserve_id {
            // Registered before: admitting it again is how a join resumes.
        } else if r.node_id != 0 && state.nodes.contains_key(&r.node_id) {
            return Err(Status::already_exists(format!(
                "node {} is already a member of this cluster; a node whose data directory was lost is removed with \
                 `pharosctl node remove {} --dead` and joins again with a new id",
                r.node_id, r.node_id
            )));
        }
        let id = match self
            .node
            .client
            .meta_write(&MetaCommand::AddNode { id: r.node_id, addr: addr.clone() }, META_WRITE_WITHIN)
            .await
        {
            Ok(MetaResponse::Added(id)) => id,
            Ok(MetaResponse::Rejected(why) | MetaResponse::Conflict(why)) => {
                return Err(Status::failed_precondition(why))
            }
            Ok(other) => return Err(Status::internal(format!("unexpected answer {other:?}"))),
            Err(e) => return Err(Status::unavailable(format!("registering the node: {}", crate::error::chain(&e)))),
        };
        if !r.reserve_id {
            self.node.rebalancer.admit(id, addr).await.map_err(|e| {
                Status::unavailable(format!("adding node {id} to the meta group: {}", crate::error::chain(&e)))
            })?;
            tracing::info!(node = id, addr = %r.grpc_addr, "node joined the cluster");
        }
        // The cluster's shape (shard count, replicas of each shard): a joining node routes by it, whatever
        // its own --shards says.
        let shards = self
            .node
            .meta
            .placement()
            .into_iter()
            .enumerate()
            .map(|(s, replicas)| ShardInfo { shard: s as u32, replicas, ..Default::default() })
            .collect();
        let replication_factor = crate::join::shape_of(&self.node.meta.state())
            .map_or(self.node.config.replication_factor, |s| s.replication_factor)
            as u32;
        Ok(Response::new(StatusResponse { node_id: id, shards, replication_factor, ..Default::default() }))
    }

    async fn remove_node(&self, req: Request<RemoveNodeRequest>) -> Result<Response<RebalanceResponse>, Status> {
        let r = req.into_inner();
        let state = if r.dead { NodeState::Dead } else { NodeState::Draining };
        let (plan_id, moves) =
            self.node.rebalancer.drain(r.node_id, state, true).await.map_err(Status::failed_precondition)?;
        Ok(Response::new(RebalanceResponse { moves: moves.iter().map(move_info).collect(), plan_id }))
    }

    async fn drain_node(&self, req: Request<DrainNodeRequest>) -> Result<Response<RebalanceResponse>, Status> {
        let r = req.into_inner();
        let (plan_id, moves) = self
            .node
            .rebalancer
            .drain(r.node_id, NodeState::Draining, false)
            .await
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(RebalanceResponse { moves: moves.iter().map(move_info).collect(), plan_id }))
    }

    /// `dry_run` only reads, so it needs no token; starting a rebalance does.
    async fn rebalance(&self, req: Request<RebalanceRequest>) -> Result<Response<RebalanceResponse>, Status> {
        if req.get_ref().dry_run {
            let moves = self.node.rebalancer.plan_now().await;
            return Ok(Response::new(RebalanceResponse { moves: moves.iter().map(move_info).collect(), plan_id: 0 }));
        }
        let r = req.into_inner();
        let (plan_id, moves) =
            self.node.rebalancer.start(r.max_concurrent).await.map_err(Status::failed_precondition)?;
        Ok(Response::new(RebalanceResponse { moves: moves.iter().map(move_info).collect(), plan_id }))
    }

    /// Reading needs no token; `cancel` does.
    async fn rebalance_status(
        &self,
        req: Request<RebalanceStatusRequest>,
    ) -> Result<Response<RebalanceStatusResponse>, Status> {
        if req.get_ref().cancel {
            // Status is a read; cancelling changes the cluster, so it needs what a change needs.
            let creds = Credentials::from_headers(&req.metadata().clone().into_headers());
            let what = "/pharos.v1.Admin/RebalanceStatus (cancel)";
            self.node
                .auth
                .check(Access::Change, &creds, "grpc", what, req.remote_addr())
                .map_err(|d| d.grpc_status())?;
            self.node.rebalancer.cancel().await.map_err(Status::failed_precondition)?;
        }
        let (p, _) = crate::rebalance::Plan::read(&self.node.meta.state());
        Ok(Response::new(RebalanceStatusResponse {
            plan_id: p.id,
            planned: p.planned,
            done: p.done,
            failed: p.failed,
            queued: p.queued.iter().map(move_info).collect(),
            running: p
                .running
                .values()
                .map(|r| RunningMove {
                    r#move: Some(move_info(&r.mv)),
                    started_at_ms: r.started_ms,
                    step: r.step.clone(),
                })
                .collect(),
            last_error: p.last_error,
            cancelled: p.cancelled,
            max_concurrent: p.max_concurrent,
        }))
    }

    /// Makes a token and answers its secret, once: only the secret's hash is stored.
    async fn create_token(&self, req: Request<CreateTokenRequest>) -> Result<Response<CreateTokenResponse>, Status> {
        let r = req.into_inner();
        let role = Role::parse(&r.role).map_err(Status::invalid_argument)?;
        crate::auth::tokens::check_name(&r.name).map_err(Status::invalid_argument)?;
        let secret = new_secret().map_err(Status::internal)?;
        let now = now_ms();
        let record = TokenRecord {
            name: r.name,
            role,
            sha256: sha256_hex(&secret),
            created_ms: now,
            expires_ms: (r.expires_in_ms > 0).then(|| now.saturating_add(r.expires_in_ms.min(i64::MAX as u64) as i64)),
        };
        let info = token_info(&record);
        self.change_tokens(|doc| doc.create(record.clone()).map_err(Status::already_exists)).await?;
        Ok(Response::new(CreateTokenResponse { secret, token: Some(info) }))
    }

    async fn list_tokens(&self, _req: Request<ListTokensRequest>) -> Result<Response<ListTokensResponse>, Status> {
        let mut tokens: Vec<TokenInfo> =
            TokenDoc::parse(&self.node.meta.state().doc(TOKENS_DOC).bytes).tokens.iter().map(token_info).collect();
        tokens.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(ListTokensResponse { tokens }))
    }

    async fn revoke_token(&self, req: Request<RevokeTokenRequest>) -> Result<Response<RevokeTokenResponse>, Status> {
        let name = req.into_inner().name;
        self.change_tokens(|doc| doc.revoke(&name).map_err(Status::not_found)).await?;
        Ok(Response::new(RevokeTokenResponse {}))
    }
}

fn move_info(m: &crate::placement::Move) -> pharos_proto::v1::Move {
    use crate::placement::Move as M;
    let (shard, from, to, kind) = match *m {
        M::Replica { shard, from, to } => (shard, from.unwrap_or(0), to, "replica"),
        M::Drop { shard, from } => (shard, from, 0, "drop"),
        M::Leader { shard, from, to } => (shard, from, to, "leader"),
    };
    pharos_proto::v1::Move { shard, from_node: from, to_node: to, kind: kind.into() }
}

pub struct QueryService {
    pub node: Arc<Node>,
}

/// Rows per streamed message: large raw results go out in pieces.
const ROWS_PER_MESSAGE: usize = 10_000;

/// How long an admin change waits for the meta group to have a leader that commits it.
const META_WRITE_WITHIN: Duration = Duration::from_secs(5);

fn query_status(e: &pharos_query::QueryError, text: &str) -> Status {
    use pharos_query::QueryError as E;
    let msg = e.render(text);
    match e {
        E::Parse(_) | E::Invalid { .. } => Status::invalid_argument(msg),
        E::Limit(_) => Status::resource_exhausted(msg),
        E::Timeout(_) => Status::deadline_exceeded(msg),
        E::Shard { .. } => Status::unavailable(msg),
        E::Internal(_) => Status::internal(msg),
    }
}

fn proto_value(v: &pharos_query::Value) -> Value {
    use pharos_query::Value as Q;
    let kind = match v {
        Q::Null => value::Kind::Null(true),
        Q::Time(t) => value::Kind::TimeMs(*t),
        Q::Float(f) => value::Kind::Number(*f),
        Q::Int(i) => value::Kind::Number(*i as f64),
        Q::Str(s) => value::Kind::Text(s.clone()),
        Q::Bool(b) => value::Kind::Text(b.to_string()),
    };
    Value { kind: Some(kind) }
}

/// Result series as stream messages: at most ROWS_PER_MESSAGE rows each; columns only in the first piece of
/// a series within its statement (`seen`).
fn messages(
    statement: u32,
    batch: Vec<pharos_query::Series>,
    seen: &mut std::collections::HashSet<(String, Vec<(String, String)>)>,
) -> Vec<QueryResponse> {
    let mut out = Vec::new();
    for s in batch {
        let tags: Vec<Tag> = s.tags.iter().map(|(k, v)| Tag { key: k.clone(), value: v.clone() }).collect();
        let mut first = seen.insert((s.name.clone(), s.tags.clone()));
        for chunk in s.values.chunks(ROWS_PER_MESSAGE) {
            out.push(QueryResponse {
                statement,
                series: vec![SeriesResult {
                    name: s.name.clone(),
                    tags: tags.clone(),
                    columns: if first { s.columns.clone() } else { vec![] },
                    rows: chunk.iter().map(|r| Row { values: r.iter().map(proto_value).collect() }).collect(),
                }],
                error: String::new(),
            });
            first = false;
        }
    }
    out
}

#[tonic::async_trait]
impl Query for QueryService {
    type QueryStream = tokio_stream::wrappers::ReceiverStream<Result<QueryResponse, Status>>;

    /// Streams each statement's series as they become final (raw queries window by window); a series with
    /// many rows comes in several messages (same name and tags, columns only in the first). A failed
    /// statement ends the stream with its status.
    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<Self::QueryStream>, Status> {
        let req = req.into_inner();
        let statements = pharos_query::parse(&req.query).map_err(|e| query_status(&e.into(), &req.query))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let node = self.node.clone();
        let opts = crate::query::QueryOptions { allow_stale: req.allow_stale };
        tokio::spawn(async move {
            for (i, st) in statements.iter().enumerate() {
                let out = tx.clone();
                let mut seen = std::collections::HashSet::new();
                let deliver = move |batch| {
                    let msgs = messages(i as u32, batch, &mut seen);
                    let out = out.clone();
                    async move {
                        for msg in msgs {
                            if out.send(Ok(msg)).await.is_err() {
                                return false;
                            }
                        }
                        true
                    }
                };
                let empty = QueryResponse { statement: i as u32, ..Default::default() };
                match node.queries.stream_statement(st, opts, deliver).await {
                    crate::query::Streamed::ClientGone => return,
                    crate::query::Streamed::Failed(e) => {
                        // A failed statement ends the stream with its status.
                        let _ = tx.send(Err(query_status(&e, &req.query))).await;
                        return;
                    }
                    crate::query::Streamed::Done { sent_any: false } => {
                        if tx.send(Ok(empty)).await.is_err() {
                            return;
                        }
                    }
                    crate::query::Streamed::Done { sent_any: true } => {}
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}
