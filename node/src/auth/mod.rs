//! Who may call what. Every HTTP route and gRPC method has an entry in one table ([`crate::http::routes`],
//! [`grpc::METHODS`]) naming the [`Access`] it needs; one check ([`Auth::check`]) decides every call, in
//! one layer in front of the handlers. Callers present:
//!
//! - an API token (`Authorization: Token|Bearer T`, HTTP Basic's password, the `p` query parameter, gRPC
//!   metadata `authorization`), resolved to a [`Principal`] with a [`Role`]: the configured admin token, or
//!   a token made with `pharosctl token create` and stored hashed in the meta group ([`tokens`]);
//! - or, node to node, the cluster secret (metadata `x-pharos-cluster-secret`), which alone opens the
//!   internal service.
//!
//! With auth off (the default) everything is open except changes to the cluster's configuration, which need
//! the admin token when one is set (how Pharos behaved before roles existed).

pub mod grpc;
pub mod tokens;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::AuthConfig;
use pharos_raft::meta::MetaState;
use tokens::{sha256_hex, TokenDoc, TokenRecord, TOKENS_DOC};
use tokio::sync::watch;

pub use pharos_raft::network::PEER_HEADER;

/// What a token may do. `admin` may do everything; `read` and `write` only their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role {s:?}: use read, write or admin")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// What a route or method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone, even with auth on: liveness and readiness probes (`/ping`, `/health`).
    Public,
    /// Reading data or state: queries, export, alerts, targets, cluster status.
    Read,
    /// Every ingest path.
    Write,
    /// Reading the cluster's configuration, which can hold credentials (routing, scrape, tokens).
    Admin,
    /// Changing the cluster or its configuration; also recorded in the audit trail.
    Change,
    /// Node-to-node calls: only the cluster secret opens them.
    Peer,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin | Access::Change => "admin",
            Access::Peer => "the cluster secret",
        }
    }
}

/// Who made a call, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Auth is off (or the route is public): nobody was asked.
    Anyone,
    /// Another node, by the cluster secret.
    Peer,
    /// The configured admin token.
    AdminToken,
    Token {
        name: String,
        role: Role,
    },
}

impl Principal {
    pub fn name(&self) -> &str {
        match self {
            Principal::Anyone => "anonymous",
            Principal::Peer => "node",
            Principal::AdminToken => "admin_token",
            Principal::Token { name, .. } => name,
        }
    }

    fn role(&self) -> Option<Role> {
        match self {
            Principal::Anyone => None,
            Principal::Peer | Principal::AdminToken => Some(Role::Admin),
            Principal::Token { role, .. } => Some(*role),
        }
    }

    fn may(&self, access: Access) -> bool {
        match (self.role(), access) {
            (_, Access::Public) => true,
            (_, Access::Peer) => *self == Principal::Peer,
            (Some(Role::Admin), _) => true,
            (Some(Role::Read), Access::Read) | (Some(Role::Write), Access::Write) => true,
            _ => false,
        }
    }
}

/// A refused call. Never carries the secret that was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Missing,
    Unknown,
    Expired {
        name: String,
    },
    Forbidden {
        name: String,
        role: Role,
        need: Access,
    },
    NotPeer,
    /// A route or method with no entry in the access tables (a bug: refused rather than guessed).
    NoDecision,
}

impl Denied {
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Missing => "missing",
            Denied::Unknown => "invalid",
            Denied::Expired { .. } => "expired",
            Denied::Forbidden { .. } => "forbidden",
            Denied::NotPeer => "peer",
            Denied::NoDecision => "no_decision",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Denied::Missing => "this needs a token: send `Authorization: Bearer <token>` (pharosctl --token or \
                                PHAROS_TOKEN; InfluxDB clients: the token as the password)"
                .into(),
            Denied::Unknown => "the token is not valid (mistyped, revoked, or from another cluster); \
                                pharosctl token list shows the tokens that exist"
                .into(),
            Denied::Expired { name } => {
                format!("token {name:?} has expired: make a new one with pharosctl token create")
            }
            Denied::Forbidden { name, role, need } => {
                format!("token {name:?} has role {}, and this needs {}", role.as_str(), need.as_str())
            }
            Denied::NotPeer => "node-to-node calls need the cluster secret (give every node the same [auth] \
                                cluster_secret, or the same admin token, from which it is derived) and, with TLS \
                                on, a certificate the cluster's CA signed"
                .into(),
            Denied::NoDecision => "this endpoint has no access decision; refused".into(),
        }
    }

    /// 401 when the caller is not known, 403 when it is known and may not.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            Denied::Forbidden { .. } | Denied::NoDecision => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    pub fn grpc_status(&self) -> tonic::Status {
        match self {
            Denied::Forbidden { .. } | Denied::NoDecision => tonic::Status::permission_denied(self.message()),
            _ => tonic::Status::unauthenticated(self.message()),
        }
    }
}

/// What a caller presented.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub token: Option<String>,
    pub peer: Option<String>,
    /// The caller presented a TLS client certificate the cluster's CA signed (verified in the handshake).
    pub peer_cert: bool,
}

impl Credentials {
    /// From `Authorization` (`Token T`, `Bearer T`, `Basic base64(user:T)`) and the cluster secret's header.
    pub fn from_headers(h: &http::HeaderMap) -> Credentials {
        let token = h.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(parse_authorization);
        let peer = h.get(PEER_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        Credentials { token, peer, peer_cert: false }
    }

    /// InfluxDB 1.x's `u` and `p` query parameters: the token is the password (when no header gave one).
    pub fn with_query(mut self, query: Option<&str>) -> Credentials {
        if self.token.is_none() {
            if let Some(q) = query {
                let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap_or_default();
                self.token = pairs.into_iter().find(|(k, v)| k == "p" && !v.is_empty()).map(|(_, v)| v);
            }
        }
        self
    }
}

fn parse_authorization(v: &str) -> Option<String> {
    let (scheme, rest) = v.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, pass) = text.split_once(':').unwrap_or((&text, ""));
        // The token is the password; a client that can only send a user name may send it there.
        let t = if pass.is_empty() { user } else { pass };
        return (!t.is_empty()).then(|| t.to_string());
    }
    None
}

/// The secret this node presents to its peers: the configured one, else one derived from the admin token
/// (so a cluster whose nodes share an admin token needs nothing more).
pub fn node_secret(config: &AuthConfig) -> Option<String> {
    if let Some(s) = &config.cluster_secret {
        return Some(s.clone());
    }
    config.admin_token.as_ref().map(|t| sha256_hex(&format!("pharos cluster secret\0{t}")))
}

/// An admin change, for the audit trail.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub who: String,
    pub what: String,
    pub from: Option<SocketAddr>,
    pub at_ms: i64,
}

/// The access check, shared by the HTTP and gRPC layers.
pub struct Auth {
    enabled: bool,
    admin_hash: Option<String>,
    /// The hash of the cluster secret peers must present, when known.
    peer_hash: Option<String>,
    /// Whether the internal service refuses callers without the cluster secret.
    check_peers: bool,
    /// Whether peers must also present a certificate of the cluster's CA (TLS is on: mutual TLS).
    peer_cert_required: bool,
    meta: watch::Receiver<Arc<MetaState>>,
    /// The token document's version and its tokens by hash.
    cache: RwLock<(u64, Arc<HashMap<String, TokenRecord>>)>,
    refusals: IntCounterVec,
    /// When each kind of refusal was last logged, and how many went unlogged since.
    logged: Mutex<HashMap<&'static str, (Instant, u64)>>,
    audit: mpsc::UnboundedSender<AuditEvent>,
}

impl Auth {
    /// `peer_cert_required`: TLS is on, so peers present certificates (mutual TLS) besides the secret.
    pub fn new(
        config: &AuthConfig,
        peer_cert_required: bool,
        meta: watch::Receiver<Arc<MetaState>>,
        refusals: IntCounterVec,
    ) -> (Auth, mpsc::UnboundedReceiver<AuditEvent>) {
        let (audit, rx) = mpsc::unbounded_channel();
        let auth = Auth {
            enabled: config.enabled,
            admin_hash: config.admin_token.as_deref().map(sha256_hex),
            peer_hash: node_secret(config).as_deref().map(sha256_hex),
            check_peers: config.checks_peers(),
            peer_cert_required,
            meta,
            cache: RwLock::new((0, Arc::new(HashMap::new()))),
            refusals,
            logged: Mutex::new(HashMap::new()),
            audit,
        };
        (auth, rx)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether this caller may see the secrets in the cluster's configuration: those who may change it (and
    /// anyone on a node that asks nobody).
    pub fn may_see_secrets(&self, p: &Principal) -> bool {
        match p {
            Principal::Anyone => !self.enabled && self.admin_hash.is_none(),
            p => p.may(Access::Admin),
        }
    }

    /// Decides one call. `what` (the route or method) and `from` only go into refusal logs and the audit trail.
    pub fn check(
        &self,
        access: Access,
        creds: &Credentials,
        interface: &'static str,
        what: &str,
        from: Option<SocketAddr>,
    ) -> Result<Principal, Denied> {
        let result = self.decide(access, creds);
        match &result {
            Ok(p) if access == Access::Change => self.record(p, what, from),
            Ok(_) => {}
            Err(d) => self.refused(d, interface, what, from),
        }
        result
    }

    fn decide(&self, access: Access, creds: &Credentials) -> Result<Principal, Denied> {
        let secret = match (&creds.peer, &self.peer_hash) {
            (Some(s), Some(h)) => sha256_hex(s) == *h,
            _ => false,
        };
        let cert = !self.peer_cert_required || creds.peer_cert;
        match access {
            Access::Public => return Ok(Principal::Anyone),
            Access::Peer if cert && (!self.check_peers || secret) => return Ok(Principal::Peer),
            Access::Peer => return Err(Denied::NotPeer),
            _ if cert && secret => return Ok(Principal::Peer),
            _ => {}
        }
        let guarded = self.enabled || (matches!(access, Access::Admin | Access::Change) && self.admin_hash.is_some());
        if !guarded {
            // Nobody is asked; a valid token still says who calls (what they may see depends on it).
            return Ok(creds.token.as_ref().and_then(|t| self.resolve(t).ok()).unwrap_or(Principal::Anyone));
        }
        let Some(secret) = &creds.token else { return Err(Denied::Missing) };
        let principal = self.resolve(secret)?;
        if principal.may(access) {
            Ok(principal)
        } else {
            let role = principal.role().unwrap_or(Role::Read);
            Err(Denied::Forbidden { name: principal.name().to_string(), role, need: access })
        }
    }

    /// The principal a secret stands for. Secrets are compared by their SHA-256 (equal hashes, equal secrets;
    /// the comparison's timing can only reveal a hash, which does not lead back to a secret).
    fn resolve(&self, secret: &str) -> Result<Principal, Denied> {
        let hash = sha256_hex(secret);
        if self.admin_hash.as_ref() == Some(&hash) {
            return Ok(Principal::AdminToken);
        }
        let tokens = self.tokens();
        let t = tokens.get(&hash).ok_or(Denied::Unknown)?;
        if t.expired(crate::clock::now_ms()) {
            return Err(Denied::Expired { name: t.name.clone() });
        }
        Ok(Principal::Token { name: t.name.clone(), role: t.role })
    }

    /// The stored tokens by hash, rebuilt when the meta group's document changes.
    fn tokens(&self) -> Arc<HashMap<String, TokenRecord>> {
        let state = self.meta.borrow().clone();
        let version = state.docs.get(TOKENS_DOC).map_or(0, |d| d.version);
        {
            let c = self.cache.read().expect("token cache lock");
            if c.0 == version {
                return c.1.clone();
            }
        }
        let bytes = state.docs.get(TOKENS_DOC).map(|d| d.bytes.as_slice()).unwrap_or(&[]);
        let map: HashMap<String, TokenRecord> =
            TokenDoc::parse(bytes).tokens.into_iter().map(|t| (t.sha256.clone(), t)).collect();
        let map = Arc::new(map);
        *self.cache.write().expect("token cache lock") = (version, map.clone());
        map
    }

    fn refused(&self, d: &Denied, interface: &'static str, what: &str, from: Option<SocketAddr>) {
        let reason = d.reason();
        self.refusals.with_label_values(&[interface, reason]).inc();
        // At most one line per reason every 10 s, saying how many went unlogged.
        let mut logged = self.logged.lock().expect("refusal log lock");
        let now = Instant::now();
        let entry = logged.entry(reason).or_insert((now - Duration::from_secs(3600), 0));
        if now.duration_since(entry.0) >= Duration::from_secs(10) {
            let also = std::mem::take(&mut entry.1);
            entry.0 = now;
            let from = from.map(|a| a.to_string()).unwrap_or_default();
            let who = match d {
                Denied::Expired { name } | Denied::Forbidden { name, .. } => name.as_str(),
                _ => "",
            };
            tracing::warn!(interface, reason, what, from, token = who, unlogged_since_last = also, "refused a call");
        } else {
            entry.1 += 1;
        }
    }

    fn record(&self, p: &Principal, what: &str, from: Option<SocketAddr>) {
        let from_s = from.map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(target: "pharos::audit", who = p.name(), what, from = from_s, "admin change");
        let _ = self.audit.send(AuditEvent {
            who: p.name().to_string(),
            what: what.to_string(),
            from,
            at_ms: crate::clock::now_ms(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn every_credential_clients_send_is_read() {
        let t = |pairs: &[(&str, &str)]| Credentials::from_headers(&headers(pairs)).token;
        assert_eq!(t(&[("authorization", "Token abc")]).as_deref(), Some("abc"));
        assert_eq!(t(&[("authorization", "Bearer abc")]).as_deref(), Some("abc"));
        assert_eq!(t(&[("authorization", "bearer  abc ")]).as_deref(), Some("abc"));
        // Basic "grafana:abc" and ":abc" and "abc:" (the token as user name when no password).
        assert_eq!(t(&[("authorization", "Basic Z3JhZmFuYTphYmM=")]).as_deref(), Some("abc"));
        assert_eq!(t(&[("authorization", "Basic OmFiYw==")]).as_deref(), Some("abc"));
        assert_eq!(t(&[("authorization", "Basic YWJjOg==")]).as_deref(), Some("abc"));
        assert_eq!(t(&[("authorization", "Basic !!!")]), None);
        assert_eq!(t(&[("authorization", "Bearer")]), None);
        assert_eq!(t(&[("authorization", "Digest x")]), None);
        assert_eq!(t(&[]), None);
        let q = Credentials::default().with_query(Some("db=x&u=grafana&p=s%2Bcret&q=SHOW"));
        assert_eq!(q.token.as_deref(), Some("s+cret"));
        let header_wins = Credentials::from_headers(&headers(&[("authorization", "Bearer h")])).with_query(Some("p=q"));
        assert_eq!(header_wins.token.as_deref(), Some("h"));
        let peer = Credentials::from_headers(&headers(&[(PEER_HEADER, "s")]));
        assert_eq!(peer.peer.as_deref(), Some("s"));
    }

    #[test]
    fn roles_open_what_they_name_and_admin_opens_all_but_peer_calls() {
        let tok = |role| Principal::Token { name: "t".into(), role };
        for (p, ok) in [
            (tok(Role::Read), [true, true, false, false, false, false]),
            (tok(Role::Write), [true, false, true, false, false, false]),
            (tok(Role::Admin), [true, true, true, true, true, false]),
            (Principal::AdminToken, [true, true, true, true, true, false]),
            (Principal::Peer, [true, true, true, true, true, true]),
        ] {
            let got: Vec<bool> =
                [Access::Public, Access::Read, Access::Write, Access::Admin, Access::Change, Access::Peer]
                    .iter()
                    .map(|a| p.may(*a))
                    .collect();
            assert_eq!(got, ok, "{p:?}");
        }
    }

    fn auth_with(config: AuthConfig, tokens: Vec<TokenRecord>) -> (Auth, watch::Sender<Arc<MetaState>>, IntCounterVec) {
        let (tx, rx) = watch::channel(Arc::new(MetaState::default()));
        put_tokens(&tx, tokens);
        let refusals = IntCounterVec::new(prometheus::Opts::new("r", "r"), &["interface", "reason"]).unwrap();
        (Auth::new(&config, false, rx, refusals.clone()).0, tx, refusals)
    }

    fn put_tokens(tx: &watch::Sender<Arc<MetaState>>, tokens: Vec<TokenRecord>) {
        let mut state = (**tx.borrow()).clone();
        let version = state.docs.get(TOKENS_DOC).map_or(0, |d| d.version) + 1;
        state.docs.insert(TOKENS_DOC.into(), pharos_raft::meta::Doc { version, bytes: TokenDoc { tokens }.to_bytes() });
        tx.send_replace(Arc::new(state));
    }

    fn token(name: &str, role: Role, secret: &str, expires_ms: Option<i64>) -> TokenRecord {
        TokenRecord { name: name.into(), role, sha256: sha256_hex(secret), created_ms: 0, expires_ms }
    }

    fn bearer(t: &str) -> Credentials {
        Credentials { token: Some(t.into()), ..Default::default() }
    }

    fn check(auth: &Auth, access: Access, creds: &Credentials) -> Result<Principal, Denied> {
        auth.check(access, creds, "http", "/test", None)
    }

    #[test]
    fn with_auth_on_every_call_needs_a_token_of_its_role() {
        let config = AuthConfig { enabled: true, admin_token: Some("root".into()), ..Default::default() };
        let tokens = vec![
            token("reader", Role::Read, "r-secret", None),
            token("writer", Role::Write, "w-secret", None),
            token("ops", Role::Admin, "a-secret", None),
            token("old", Role::Read, "o-secret", Some(1)),
        ];
        let (auth, tx, refusals) = auth_with(config.clone(), tokens);
        let none = Credentials::default();
        assert_eq!(check(&auth, Access::Public, &none), Ok(Principal::Anyone));
        assert_eq!(check(&auth, Access::Read, &none), Err(Denied::Missing));
        assert_eq!(check(&auth, Access::Read, &bearer("guess")), Err(Denied::Unknown));
        assert_eq!(check(&auth, Access::Read, &bearer("r-secret")).unwrap().name(), "reader");
        assert!(matches!(check(&auth, Access::Write, &bearer("r-secret")), Err(Denied::Forbidden { .. })));
        assert!(matches!(check(&auth, Access::Read, &bearer("w-secret")), Err(Denied::Forbidden { .. })));
        assert!(matches!(check(&auth, Access::Change, &bearer("w-secret")), Err(Denied::Forbidden { .. })));
        assert_eq!(check(&auth, Access::Change, &bearer("a-secret")).unwrap().name(), "ops");
        assert_eq!(check(&auth, Access::Change, &bearer("root")), Ok(Principal::AdminToken));
        assert_eq!(check(&auth, Access::Read, &bearer("o-secret")), Err(Denied::Expired { name: "old".into() }));
        // An admin token opens the API, not the node-to-node service; the cluster secret opens both.
        assert_eq!(check(&auth, Access::Peer, &bearer("root")), Err(Denied::NotPeer));
        let peer = Credentials { peer: node_secret(&config), ..Default::default() };
        assert_eq!(check(&auth, Access::Peer, &peer), Ok(Principal::Peer));
        assert_eq!(check(&auth, Access::Change, &peer), Ok(Principal::Peer));
        let wrong_peer = Credentials { peer: Some("nope".into()), ..Default::default() };
        assert_eq!(check(&auth, Access::Peer, &wrong_peer), Err(Denied::NotPeer));
        // Revoked: gone from the next document version on.
        put_tokens(&tx, vec![token("writer", Role::Write, "w-secret", None)]);
        assert_eq!(check(&auth, Access::Read, &bearer("r-secret")), Err(Denied::Unknown));
        assert_eq!(check(&auth, Access::Write, &bearer("w-secret")).unwrap().name(), "writer");
        assert_eq!(refusals.with_label_values(&["http", "missing"]).get(), 1);
        assert_eq!(refusals.with_label_values(&["http", "forbidden"]).get(), 3);
        assert_eq!(refusals.with_label_values(&["http", "peer"]).get(), 2);
    }

    #[test]
    fn with_auth_off_only_changes_need_the_admin_token_and_only_when_one_is_set() {
        let (open, _tx, _) = auth_with(AuthConfig::default(), vec![]);
        let none = Credentials::default();
        for a in [Access::Read, Access::Write, Access::Admin, Access::Change, Access::Peer] {
            assert!(check(&open, a, &none).is_ok(), "{a:?}");
        }
        let config = AuthConfig { admin_token: Some("root".into()), ..Default::default() };
        let (guarded, _tx, _) = auth_with(config, vec![token("reader", Role::Read, "r-secret", None)]);
        assert_eq!(check(&guarded, Access::Read, &none), Ok(Principal::Anyone));
        assert!(!guarded.may_see_secrets(&Principal::Anyone), "an admin token is set: only admins see secrets");
        let admin = check(&guarded, Access::Read, &bearer("root")).unwrap();
        assert!(guarded.may_see_secrets(&admin));
        let reader = check(&guarded, Access::Read, &bearer("r-secret")).unwrap();
        assert!(!guarded.may_see_secrets(&reader));
        assert!(open.may_see_secrets(&Principal::Anyone), "a node that asks nobody hides nothing");
        assert_eq!(check(&guarded, Access::Write, &none), Ok(Principal::Anyone));
        // Nodes of a cluster from before the cluster secret call each other without it.
        assert_eq!(check(&guarded, Access::Peer, &none), Ok(Principal::Peer));
        assert_eq!(check(&guarded, Access::Change, &none), Err(Denied::Missing));
        assert!(matches!(check(&guarded, Access::Change, &bearer("r-secret")), Err(Denied::Forbidden { .. })));
        assert_eq!(check(&guarded, Access::Change, &bearer("root")), Ok(Principal::AdminToken));
        // A configured cluster secret is checked even with auth off.
        let config = AuthConfig { cluster_secret: Some("cs".into()), ..Default::default() };
        let (peers_checked, _tx, _) = auth_with(config, vec![]);
        assert_eq!(check(&peers_checked, Access::Peer, &none), Err(Denied::NotPeer));
        let peer = Credentials { peer: Some("cs".into()), ..Default::default() };
        assert_eq!(check(&peers_checked, Access::Peer, &peer), Ok(Principal::Peer));
    }

    #[test]
    fn with_tls_peers_also_need_a_certificate_of_the_cluster_ca() {
        let (tx, rx) = watch::channel(Arc::new(MetaState::default()));
        let _keep = tx;
        let refusals = IntCounterVec::new(prometheus::Opts::new("r", "r"), &["interface", "reason"]).unwrap();
        let config = AuthConfig { enabled: true, admin_token: Some("root".into()), ..Default::default() };
        let auth = Auth::new(&config, true, rx.clone(), refusals.clone()).0;
        let secret = Credentials { peer: node_secret(&config), ..Default::default() };
        assert_eq!(check(&auth, Access::Peer, &secret), Err(Denied::NotPeer), "the secret alone is not enough");
        let both = Credentials { peer_cert: true, ..secret.clone() };
        assert_eq!(check(&auth, Access::Peer, &both), Ok(Principal::Peer));
        let cert_only = Credentials { peer_cert: true, ..Default::default() };
        assert_eq!(check(&auth, Access::Peer, &cert_only), Err(Denied::NotPeer));
        // Users need no certificate: their token decides.
        assert_eq!(check(&auth, Access::Change, &bearer("root")), Ok(Principal::AdminToken));
        // TLS on, auth off and no secret: the certificate alone opens the internal service.
        let open = Auth::new(&AuthConfig::default(), true, rx, refusals).0;
        assert_eq!(check(&open, Access::Peer, &cert_only), Ok(Principal::Peer));
        assert_eq!(check(&open, Access::Peer, &Credentials::default()), Err(Denied::NotPeer));
    }

    #[test]
    fn refusals_say_401_or_403() {
        assert_eq!(Denied::Missing.http_status(), 401);
        assert_eq!(Denied::Unknown.grpc_status().code(), tonic::Code::Unauthenticated);
        let f = Denied::Forbidden { name: "g".into(), role: Role::Read, need: Access::Write };
        assert_eq!(f.http_status(), 403);
        assert_eq!(f.grpc_status().code(), tonic::Code::PermissionDenied);
        assert!(f.message().contains("role read") && f.message().contains("needs write"));
    }
}
