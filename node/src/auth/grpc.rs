//! The gRPC side: every method's access, and the tower layer that checks it before any service runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::{Access, Auth, Credentials, Denied};

/// Every gRPC method any node serves, and what it needs. A method missing here is refused (a test checks
/// that every method in proto/ has an entry).
pub const METHODS: &[(&str, Access)] = &[
    ("/pharos.v1.Write/Write", Access::Write),
    ("/pharos.v1.Query/Query", Access::Read),
    ("/pharos.v1.Admin/Status", Access::Read),
    ("/pharos.v1.Admin/ApplyRules", Access::Change),
    ("/pharos.v1.Admin/GetRules", Access::Read),
    ("/pharos.v1.Admin/Alerts", Access::Read),
    ("/pharos.v1.Admin/ApplyRouting", Access::Change),
    // Routing and scrape configurations hold receivers' and targets' credentials: readers see them replaced.
    ("/pharos.v1.Admin/GetRouting", Access::Read),
    ("/pharos.v1.Admin/AddSilence", Access::Change),
    ("/pharos.v1.Admin/ListSilences", Access::Read),
    ("/pharos.v1.Admin/ExpireSilence", Access::Change),
    ("/pharos.v1.Admin/ApplyScrape", Access::Change),
    ("/pharos.v1.Admin/GetScrape", Access::Read),
    ("/pharos.v1.Admin/Targets", Access::Read),
    ("/pharos.v1.Admin/AddNode", Access::Change),
    ("/pharos.v1.Admin/RemoveNode", Access::Change),
    ("/pharos.v1.Admin/DrainNode", Access::Change),
    ("/pharos.v1.Admin/Rebalance", Access::Change),
    ("/pharos.v1.Admin/RebalanceStatus", Access::Read),
    ("/pharos.v1.Admin/CreateToken", Access::Change),
    ("/pharos.v1.Admin/ListTokens", Access::Admin),
    ("/pharos.v1.Admin/RevokeToken", Access::Change),
    // A backup holds every sample and the whole configuration, token hashes and credentials included.
    ("/pharos.v1.Admin/Backup", Access::Admin),
    ("/pharos.v1.Admin/Cardinality", Access::Read),
    ("/pharos.internal.v1.Internal/AppendEntries", Access::Peer),
    ("/pharos.internal.v1.Internal/Vote", Access::Peer),
    ("/pharos.internal.v1.Internal/InstallSnapshot", Access::Peer),
    ("/pharos.internal.v1.Internal/ForwardWrite", Access::Peer),
    ("/pharos.internal.v1.Internal/ForwardQuery", Access::Peer),
    ("/pharos.internal.v1.Internal/ForwardMeta", Access::Peer),
    ("/pharos.internal.v1.Internal/Membership", Access::Peer),
];

pub fn access_of(path: &str) -> Option<Access> {
    METHODS.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

/// A tower layer for tonic's server: checks each call against [`METHODS`] and answers refusals itself
/// (Unauthenticated or PermissionDenied), so no service code runs for them. The caller's [`super::Principal`]
/// goes into the request's extensions.
#[derive(Clone)]
pub struct AuthLayer {
    pub auth: Arc<Auth>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService { inner, auth: self.auth.clone() }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Auth>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        let ext = req.extensions();
        let tls = ext.get::<TlsConnectInfo<TcpConnectInfo>>();
        let from = ext.get::<TcpConnectInfo>().or_else(|| tls.map(|t| t.get_ref())).and_then(|c| c.remote_addr());
        // The listener's verifier accepted it: a certificate here was signed by the cluster's CA.
        let peer_cert = tls.and_then(|t| t.peer_certs()).is_some_and(|c| !c.is_empty());
        let decision = match access_of(path) {
            Some(access) => {
                let interface = if access == Access::Peer { "internal" } else { "grpc" };
                let creds = Credentials { peer_cert, ..Credentials::from_headers(req.headers()) };
                self.auth.check(access, &creds, interface, path, from)
            }
            None => {
                let d = Denied::NoDecision;
                self.auth.refused(&d, "grpc", path, from);
                Err(d)
            }
        };
        match decision {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                // The ready service answers this call; a clone takes its place for the next.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(req))
            }
            Err(d) => {
                let resp = d.grpc_status().into_http();
                Box::pin(async move { Ok(resp) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `rpc` in proto/ has an access decision, and every decision names a method that exists.
    #[test]
    fn every_method_in_proto_has_an_entry() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
        let mut found = Vec::new();
        for f in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            let package = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("package ").map(|p| p.trim_end_matches(';').to_string()));
            let mut service = None;
            for line in text.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.split_whitespace().next().map(str::to_string);
                }
                if let Some(rest) = line.strip_prefix("rpc ") {
                    let name = rest.split('(').next().unwrap().trim();
                    let (p, s) = (package.as_ref().unwrap(), service.as_ref().unwrap());
                    found.push(format!("/{p}.{s}/{name}"));
                }
            }
        }
        assert!(found.len() > 20, "read the proto files: {found:?}");
        for m in &found {
            assert!(access_of(m).is_some(), "{m} has no access decision in auth::grpc::METHODS");
        }
        for (m, _) in METHODS {
            assert!(found.iter().any(|f| f == m), "{m} is in METHODS but not in proto/");
        }
    }

    /// docs/security.md's tables name every route and method the code decides.
    #[test]
    fn the_security_doc_names_every_route_and_method() {
        let doc = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md"))
            .unwrap();
        for (m, _) in METHODS {
            let name = m.rsplit('/').next().unwrap();
            let short = if m.contains(".internal.") { "Internal.*".to_string() } else { format!(".{name}`") };
            assert!(doc.contains(&short) || doc.contains(&format!("`{}`", &m[1..].replace('/', "."))), "{m}");
        }
        for r in crate::http::route_table() {
            assert!(doc.contains(&format!(" {}`", r.path)), "{} is not in docs/security.md", r.path);
        }
    }
    /// Every web UI file is routed, without a token (the files hold no data); every UI route has a file.
    #[test]
    fn every_ui_file_is_routed_publicly() {
        let routes = crate::http::route_table();
        for (path, _, bytes) in crate::ui::ASSETS {
            assert!(!bytes.is_empty(), "{path}");
            let r = routes.iter().find(|r| r.path == *path).unwrap_or_else(|| panic!("{path} is not routed"));
            assert_eq!(r.access, crate::auth::Access::Public, "{path}");
        }
        for r in routes.iter().filter(|r| r.path == "/" || r.path.starts_with("/ui/")) {
            assert!(crate::ui::ASSETS.iter().any(|(p, _, _)| *p == r.path), "{} has no file", r.path);
        }
    }
}
