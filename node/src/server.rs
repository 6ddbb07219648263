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
use tracing::info;

use crate::cluster::Node;
use crate::config::Config;
use crate::error::NodeError;
use crate::grpc::{AdminService, QueryService, WriteService};
use crate::internal::InternalService;

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
    let (shutdown, _) = broadcast::channel::<()>(8);
    let max_msg = config.limits.max_body_bytes.max(4 << 20);
    let node = Node::start(config, shutdown.clone()).await?;
    node.metrics.up.set(1);
    let _ = node.scraping.set(crate::scrape::start(node.clone()));
    let leadership_log = tokio::spawn(crate::logging::leadership_changes(node.clone()));
    info!(node = node.id, http = %node.config.http_addr, grpc = %node.config.grpc_addr, data = %node.config.data_dir.display(), "pharos started");

    let (stop_tx, _) = broadcast::channel::<()>(2);
    let mut grpc_stop = stop_tx.subscribe();
    // Accepted connections need TCP_NODELAY set here: the builder's setting only reaches listeners tonic binds
    // itself. Without it, small replies (Raft acks, forwarded query results) wait on Nagle and delayed ACKs.
    let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let grpc = tonic::transport::Server::builder()
        .add_service(
            InternalServer::new(InternalService { node: node.clone() })
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20),
        )
        .add_service(WriteServer::new(WriteService { node: node.clone() }).max_decoding_message_size(max_msg))
        .add_service(AdminServer::new(AdminService { node: node.clone() }))
        .add_service(QueryServer::new(QueryService { node: node.clone() }))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = grpc_stop.recv().await;
        });
    let mut http_stop = stop_tx.subscribe();
    let http = axum::serve(http_listener, crate::http::router(node.clone())).with_graceful_shutdown(async move {
        let _ = http_stop.recv().await;
    });
    if let Some(l) = line_tcp {
        tokio::spawn(crate::line_listeners::serve_tcp(node.clone(), l, stop_tx.subscribe()));
    }
    if let Some(s) = line_udp {
        tokio::spawn(crate::line_listeners::serve_udp(node.clone(), s, stop_tx.subscribe()));
    }
    let grpc_task = tokio::spawn(grpc);
    let http_task = tokio::spawn(async move { http.await });
    let gauges = {
        let node = node.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                node.update_gauges();
            }
        })
    };

    stop.await;
    info!("shutting down: no new requests, finishing in-flight ones");
    node.metrics.up.set(0);
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), http_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), grpc_task).await;
    gauges.abort();
    leadership_log.abort();
    if let Some(s) = node.scraping.get() {
        s.manager.shutdown().await;
    }
    node.stop().await;
    info!("stopped");
    Ok(())
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
