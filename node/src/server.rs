//! Starting and stopping a node: listeners first (so a busy port fails fast), then the Raft groups, then
//! the HTTP and gRPC servers; SIGTERM or Ctrl-C stops accepting, lets in-flight requests finish, stops the
//! groups and checkpoints every engine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pharos_proto::internal::internal_server::InternalServer;
use pharos_proto::v1::admin_server::AdminServer;
use pharos_proto::v1::query_server::QueryServer;
use pharos_proto::v1::write_server::WriteServer;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tracing::info;

use crate::alerting::Alerting;
use crate::auth::Auth;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::NodeError;
use crate::grpc::{AdminService, QueryService, WriteService};
use crate::ingest::Ingest;
use crate::internal::InternalService;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::query::Queries;
use crate::rebalance::Rebalancer;
use crate::replicas::LeaderService;
use crate::routing::Router;
use crate::scrape::ScrapeContext;
use crate::write::Writes;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({what}): {source}; is another pharos running? pick another with --{flag}")]
    Bind { addr: SocketAddr, what: &'static str, flag: &'static str, source: std::io::Error },
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

async fn bind(addr: SocketAddr, what: &'static str, flag: &'static str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, what, flag, source })
}

/// Runs a node until `stop` resolves (a signal, in the binary).
pub async fn run(
    config: Config,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let http_listener = bind(config.http_addr, "HTTP", "http-addr").await?;
    let grpc_listener = bind(config.grpc_addr, "gRPC", "grpc-addr").await?;
    let line_tcp = match config.line_tcp_addr {
        Some(a) => Some(bind(a, "line protocol TCP", "line-tcp-addr").await?),
        None => None,
    };
    let line_udp = match config.line_udp_addr {
        Some(addr) => Some(tokio::net::UdpSocket::bind(addr).await.map_err(|source| ServeError::Bind {
            addr,
            what: "line protocol UDP",
            flag: "line-udp-addr",
            source,
        })?),
        None => None,
    };
    // A certificate that cannot be used stops the node before it joins anything.
    let tls = match config.tls.files() {
        Some((cert, key, ca)) => Some((
            crate::tls::node_cert(cert, key, config.tls.reload_interval).map_err(ServeError::Tls)?,
            crate::tls::read_ca(ca).map_err(ServeError::Tls)?,
        )),
        None => None,
    };
    let (shutdown, _) = broadcast::channel::<()>(8);
    let max_msg = config.limits.max_body_bytes.max(4 << 20);
    let mut config = config;
    let (id, fresh) = crate::join::node_id(&config).await?;
    config.node_id = id;
    if let Some(shape) = crate::join::joined_shape() {
        adopt_shape(&mut config, shape);
    }
    let node = wire(Arc::new(config), shutdown.clone()).await?;
    node.metrics.up.set(1);
    warn_if_open(&node.config);
    let leadership_log = tokio::spawn(crate::logging::leadership_changes(node.clone()));
    info!(node = node.id, http = %node.config.http_addr, grpc = %node.config.grpc_addr, data = %node.config.data_dir.display(), "pharos started");

    let (stop_tx, _) = broadcast::channel::<()>(2);
    let mut grpc_stop = stop_tx.subscribe();
    let grpc_router = tonic::transport::Server::builder()
        .layer(crate::auth::grpc::AuthLayer { auth: node.auth.clone() })
        .add_service(
            InternalServer::new(InternalService {
                meta: node.meta.clone(),
                replicas: node.replicas.clone(),
                client: node.client.clone(),
                metrics: node.metrics.clone(),
                limits: node.config.limits.clone(),
            })
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20),
        )
        .add_service(WriteServer::new(WriteService { node: node.clone() }).max_decoding_message_size(max_msg))
        .add_service(AdminServer::new(AdminService { node: node.clone() }))
        .add_service(QueryServer::new(QueryService { node: node.clone() }));
    let grpc_shutdown = async move {
        let _ = grpc_stop.recv().await;
    };
    let app = crate::http::router(node.clone()).into_make_service_with_connect_info::<crate::tls::RemoteAddr>();
    let mut http_stop = stop_tx.subscribe();
    let http_shutdown = async move {
        let _ = http_stop.recv().await;
    };
    let (grpc_task, http_task) = match &tls {
        Some((cert, roots)) => {
            // Nodes present their certificates on the gRPC port (mutual TLS); users need none.
            let grpc_tls =
                crate::tls::server_config(cert.clone(), &[b"h2"], Some(roots.clone())).map_err(ServeError::Tls)?;
            let rx = crate::tls::accept(grpc_listener, grpc_tls);
            let incoming = tokio_stream::wrappers::ReceiverStream::new(rx).map(|(s, _)| Ok::<_, std::io::Error>(s));
            let grpc = grpc_router.serve_with_incoming_shutdown(incoming, grpc_shutdown);
            let http_tls =
                crate::tls::server_config(cert.clone(), &[b"h2", b"http/1.1"], None).map_err(ServeError::Tls)?;
            let local = node.config.http_addr;
            let listener = crate::tls::TlsListener { rx: crate::tls::accept(http_listener, http_tls), local };
            let http = axum::serve(listener, app).with_graceful_shutdown(http_shutdown);
            (tokio::spawn(grpc), tokio::spawn(async move { http.await }))
        }
        None => {
            // Accepted connections need TCP_NODELAY set here: the builder's setting only reaches listeners tonic
            // binds itself. Without it, small replies (Raft acks, forwarded query results) wait on Nagle and
            // delayed ACKs.
            let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
            let grpc = grpc_router.serve_with_incoming_shutdown(incoming, grpc_shutdown);
            let http = axum::serve(http_listener, app).with_graceful_shutdown(http_shutdown);
            (tokio::spawn(grpc), tokio::spawn(async move { http.await }))
        }
    };
    if let Some(l) = line_tcp {
        tokio::spawn(crate::line_listeners::serve_tcp(node.clone(), l, stop_tx.subscribe()));
    }
    if let Some(s) = line_udp {
        tokio::spawn(crate::line_listeners::serve_udp(node.clone(), s, stop_tx.subscribe()));
    }
    let member = node.meta.raft.metrics().borrow().membership_config.membership().get_node(&node.id).is_some();
    let (join_failed_tx, join_failed) = tokio::sync::oneshot::channel::<NodeError>();
    if node.config.join.is_some() && !member {
        // Serving first: the meta group's leader replicates to this node while it admits it.
        let (config, id, rebalancer) = (node.config.clone(), node.id, node.rebalancer.clone());
        tokio::spawn(async move {
            match crate::join::become_member(&config, id, fresh).await {
                Ok(()) => rebalancer.mark_seen(id).await,
                Err(e) => {
                    let _ = join_failed_tx.send(e);
                }
            }
        });
    } else {
        let (rebalancer, id) = (node.rebalancer.clone(), node.id);
        tokio::spawn(async move { rebalancer.mark_seen(id).await });
    }
    let gauges = {
        let node = node.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                node.cluster.update_gauges();
            }
        })
    };

    let failed = tokio::select! {
        _ = stop => None,
        Ok(e) = join_failed => Some(e),
    };
    if let Some(e) = &failed {
        tracing::error!(cause = %e, "could not join the cluster; stopping");
    }
    info!("shutting down: no new requests, finishing in-flight ones");
    node.metrics.up.set(0);
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), http_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), grpc_task).await;
    gauges.abort();
    leadership_log.abort();
    node.scraping.manager.shutdown().await;
    node.cluster.stop().await;
    info!("stopped");
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn adopt_shape(config: &mut Config, shape: crate::join::Shape) {
    if (config.shards, config.replication_factor) != (shape.shards, shape.replication_factor) {
        if config.join.is_none() || config.shards != Config::default().shards {
            tracing::warn!(
                shards = shape.shards,
                replication_factor = shape.replication_factor,
                "the cluster's shard count and replication factor apply; this node's differ and are ignored"
            );
        }
        config.shards = shape.shards;
        config.replication_factor = shape.replication_factor;
    }
}

/// Starts the node's Raft groups and wires the parts together: each part receives the parts it uses.
async fn wire(config: Arc<Config>, shutdown: broadcast::Sender<()>) -> Result<Arc<Node>, NodeError> {
    let id = config.node_id;
    let metrics = Arc::new(Metrics::new(id));
    let cluster = Arc::new(Cluster::start(&config, id, metrics.clone(), shutdown).await?);
    // A cluster's shard count and replication factor are its own, fixed when it was founded: once the meta
    // group records a placement, routing and planning follow it, whatever this node's flags say.
    let config = match crate::join::shape_of(&cluster.meta.state()) {
        Some(shape) if (shape.shards, shape.replication_factor) != (config.shards, config.replication_factor) => {
            let mut c = (*config).clone();
            adopt_shape(&mut c, shape);
            Arc::new(c)
        }
        _ => config,
    };
    let (auth, audit) =
        Auth::new(&config.auth, config.tls.enabled(), cluster.meta.subscribe(), metrics.auth_refusals.clone());
    let router = Router::new(config.shards);
    let (meta, replicas, client) = (cluster.meta.clone(), cluster.replicas.clone(), cluster.client.clone());
    let writes =
        Arc::new(Writes::new(router.clone(), replicas.clone(), client.clone(), metrics.clone(), config.write.timeout));
    let ingest = Arc::new(Ingest::new(writes, config.clone(), metrics.clone()));
    let queries =
        Arc::new(Queries::new(router.clone(), replicas.clone(), client.clone(), metrics.clone(), config.query.clone()));
    let alerting = Arc::new(Alerting {
        me: id,
        config: config.clone(),
        metrics: metrics.clone(),
        router: router.clone(),
        replicas: replicas.clone(),
        meta: meta.clone(),
        client: client.clone(),
        ingest: ingest.clone(),
        queries: queries.clone(),
        view: Arc::new(crate::alerting::view::ClusterView::new(config.shards)),
    });
    tokio::spawn(alerting.view.clone().run(alerting.clone()));
    // Leader services: maintenance (the leader's clock through the log) and the alert actor of the rule
    // groups placed on the shard, on every replica while it leads.
    let every = config.write.maintenance_interval;
    let maintenance: LeaderService =
        Arc::new(move |r| Box::pin(crate::writer::maintenance(r.shard, r.raft.clone(), every)));
    replicas.on_leader(maintenance);
    replicas.on_leader(alerting.leader_service());
    // The rebalance executor runs on the meta group's leader; every node keeps its replicas in line with
    // the placement.
    let rebalancer = Arc::new(Rebalancer::new(
        meta.clone(),
        client.clone(),
        config.shards,
        config.replication_factor,
        crate::rebalance::Settings {
            max_concurrent: config.rebalance.max_concurrent,
            move_timeout: config.rebalance.move_timeout,
            meta_within: Duration::from_secs(10),
        },
    ));
    {
        let r = rebalancer.clone();
        pharos_raft::leadership::spawn_while_leader(&meta.raft, move || r.clone().run());
    }
    cluster.spawn_reconciler();
    crate::log_keeper::spawn(cluster.clone(), config.raft.clone());
    tokio::spawn(crate::rebalance::follow_chunk_formats(meta.clone(), id));
    tokio::spawn(audit_series(audit, ingest.clone()));
    let scraping = crate::scrape::start(ScrapeContext {
        config: config.clone(),
        metrics: metrics.clone(),
        meta: meta.clone(),
        client: client.clone(),
        ingest: ingest.clone(),
    });
    Ok(Arc::new(Node {
        id,
        config,
        metrics,
        router,
        cluster,
        meta,
        replicas,
        client,
        ingest,
        queries,
        alerting,
        scraping,
        rebalancer,
        auth: Arc::new(auth),
    }))
}

/// Writes each admin change into the cluster as a sample of `pharos_audit` (tags `who`, `what`, `from`:
/// the caller's address without its port), so the audit trail can be queried like any series.
async fn audit_series(mut events: tokio::sync::mpsc::UnboundedReceiver<crate::auth::AuditEvent>, ingest: Arc<Ingest>) {
    use pharos_storage::{Point, SmolStr};
    while let Some(e) = events.recv().await {
        let mut tags: Vec<(SmolStr, SmolStr)> =
            vec![("what".into(), e.what.as_str().into()), ("who".into(), e.who.as_str().into())];
        if let Some(from) = e.from {
            tags.push(("from".into(), from.ip().to_string().into()));
        }
        tags.sort();
        let point =
            Point { measurement: "pharos_audit".into(), tags, fields: vec![("count".into(), 1.0)], timestamp: e.at_ms };
        let batch = crate::ingest::Batch {
            source: crate::ingest::Source::Audit,
            precision: None,
            points: vec![point],
            then_invalid: false,
        };
        if let Err(err) = ingest.ingest(batch).await {
            tracing::warn!(who = e.who, what = e.what, error = %err, "could not store an audit record (its log line stands)");
        }
    }
}

/// A node other machines can reach, with nobody asked who they are, says so loudly once at start.
fn warn_if_open(config: &Config) {
    if let Some(open) = open_listeners(config) {
        tracing::warn!(
            listeners = %open,
            "AUTH IS OFF on a non-loopback address: anyone who reaches these ports can read, write and change \
             the cluster. Turn it on with --auth (or [auth] enabled = true) and an [auth] admin_token; see \
             docs/security.md"
        );
    }
}

/// With auth off, the listeners on a non-loopback address (the HTTP and gRPC ones, and raw line protocol
/// over TCP and UDP, which carries no credential), as `name=addr` words; None when auth is on or every
/// listener is on loopback.
fn open_listeners(config: &Config) -> Option<String> {
    if config.auth.enabled {
        return None;
    }
    let listeners = [
        ("http", Some(config.http_addr)),
        ("grpc", Some(config.grpc_addr)),
        ("line_tcp", config.line_tcp_addr),
        ("line_udp", config.line_udp_addr),
    ];
    let open: Vec<String> = listeners
        .iter()
        .filter_map(|(name, a)| a.filter(|a| !a.ip().is_loopback()).map(|a| format!("{name}={a}")))
        .collect();
    (!open.is_empty()).then(|| open.join(" "))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub type SharedNode = Arc<Node>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_off_warns_of_every_listener_off_loopback() {
        let mut c = Config::default();
        assert_eq!(open_listeners(&c), None, "the defaults listen on loopback only");
        // Raw line protocol on every interface, HTTP and gRPC on loopback: still open to anyone.
        c.line_tcp_addr = Some("0.0.0.0:8094".parse().unwrap());
        c.line_udp_addr = Some("127.0.0.1:8089".parse().unwrap());
        assert_eq!(open_listeners(&c).as_deref(), Some("line_tcp=0.0.0.0:8094"));
        c.grpc_addr = "10.0.0.5:8090".parse().unwrap();
        assert_eq!(open_listeners(&c).as_deref(), Some("grpc=10.0.0.5:8090 line_tcp=0.0.0.0:8094"));
        c.auth.enabled = true;
        assert_eq!(open_listeners(&c), None, "no warning with auth on");
    }
}
