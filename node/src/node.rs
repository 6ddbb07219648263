//! What the front ends (HTTP, gRPC, the line-protocol listeners) use of a running node: its parts, built
//! and wired by [`crate::server`]. Nothing below the front ends holds this; each part receives only the
//! parts it uses.

use std::sync::Arc;

use pharos_raft::NodeId;

use crate::alerting::Alerting;
use crate::auth::Auth;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::ingest::Ingest;
use crate::meta::Meta;
use crate::metrics::Metrics;
use crate::query::Queries;
use crate::rebalance::Rebalancer;
use crate::replicas::Replicas;
use crate::routing::Router;
use crate::rpc::Client;
use crate::scrape::Scraping;

pub struct Node {
    pub id: NodeId,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub router: Router,
    /// This node's Raft groups (for status, compaction and shutdown).
    pub cluster: Arc<Cluster>,
    pub meta: Arc<Meta>,
    pub replicas: Arc<Replicas>,
    pub client: Arc<Client>,
    pub ingest: Arc<Ingest>,
    pub queries: Arc<Queries>,
    pub alerting: Arc<Alerting>,
    pub scraping: Arc<Scraping>,
    pub rebalancer: Arc<Rebalancer>,
    /// Who may call what (every HTTP route and gRPC method is checked by it).
    pub auth: Arc<Auth>,
}
