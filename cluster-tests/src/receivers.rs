//! Real notification receivers for the alerting tests: an HTTP server on loopback taking webhooks,
//! PagerDuty events and Twilio-shaped SMS requests (and able to play down with 503s), Debian's aiosmtpd as
//! an SMTP server writing a maildir, and Debian's prometheus-alertmanager.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tempfile::TempDir;

use crate::free_port;

/// One request a receiver accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// `hook`, `pagerduty` or `sms`.
    pub kind: String,
    pub path: String,
    /// `X-Pharos-Notification-Key`.
    pub key: String,
    pub authorization: String,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    /// While set, every request gets 503 (and is counted, not recorded).
    down: AtomicBool,
    refused: AtomicUsize,
}

/// The HTTP receiver: `POST /hook/{name}`, `POST /pagerduty/v2/enqueue`,
/// `POST /sms/2010-04-01/Accounts/{sid}/Messages.json`.
pub struct HttpReceiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    _server: tokio::task::JoinHandle<()>,
}

async fn accept(
    State(inner): State<Arc<Inner>>,
    kind: &str,
    path: String,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if inner.down.load(Ordering::SeqCst) {
        inner.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    inner.received.lock().unwrap().push(Received {
        kind: kind.into(),
        path,
        key: h("x-pharos-notification-key"),
        authorization: h("authorization"),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    if kind == "pagerduty" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    }
}

impl HttpReceiver {
    pub async fn start() -> Result<HttpReceiver> {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route(
                "/hook/{name}",
                post(|s: State<Arc<Inner>>, Path(name): Path<String>, h: HeaderMap, b: Bytes| async move {
                    accept(s, "hook", format!("/hook/{name}"), h, b).await
                }),
            )
            .route(
                "/basic/{name}",
                post(|s: State<Arc<Inner>>, Path(name): Path<String>, h: HeaderMap, b: Bytes| async move {
                    accept(s, "basic", format!("/basic/{name}"), h, b).await
                }),
            )
            .route(
                "/am/api/v2/alerts",
                post(|s: State<Arc<Inner>>, h: HeaderMap, b: Bytes| async move {
                    accept(s, "alertmanager", "/am/api/v2/alerts".into(), h, b).await
                }),
            )
            .route(
                "/pagerduty/v2/enqueue",
                post(|s: State<Arc<Inner>>, h: HeaderMap, b: Bytes| async move {
                    accept(s, "pagerduty", "/pagerduty/v2/enqueue".into(), h, b).await
                }),
            )
            .route(
                "/sms/2010-04-01/Accounts/{sid}/Messages.json",
                post(|s: State<Arc<Inner>>, Path(sid): Path<String>, h: HeaderMap, b: Bytes| async move {
                    accept(s, "sms", format!("/sms/{sid}"), h, b).await
                }),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(HttpReceiver { addr, inner, _server: server })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Requests refused with 503 while down.
    pub fn refused(&self) -> usize {
        self.inner.refused.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    pub fn of_kind(&self, kind: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.kind == kind).collect()
    }
}

/// Debian's aiosmtpd (`/usr/bin/python3 -m aiosmtpd`) delivering into a maildir.
pub struct SmtpServer {
    pub addr: String,
    maildir: PathBuf,
    _dir: TempDir,
    child: Child,
}

impl SmtpServer {
    pub async fn start() -> Result<SmtpServer> {
        SmtpServer::start_with(&[], None).await
    }

    /// A server that requires STARTTLS with this certificate and key (PEM), or (`implicit`) speaks TLS from
    /// the first byte, on `port` (any free one when None).
    pub async fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        implicit: bool,
        port: Option<u16>,
    ) -> Result<SmtpServer> {
        let (c, k) = if implicit { ("--smtpscert", "--smtpskey") } else { ("--tlscert", "--tlskey") };
        let args = [c.to_string(), cert.display().to_string(), k.to_string(), key.display().to_string()];
        SmtpServer::start_with(&args, port).await
    }

    /// A server that requires STARTTLS with this certificate and key, then AUTH as `user` with `password`
    /// (`cluster-tests/scripts/smtp_auth.py`, on aiosmtpd).
    pub async fn start_tls_auth(
        cert: &std::path::Path,
        key: &std::path::Path,
        user: &str,
        password: &str,
    ) -> Result<SmtpServer> {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/smtp_auth.py");
        SmtpServer::spawn(None, |addr, maildir| {
            let (host, port) = addr.split_once(':').expect("host:port");
            let mut c = Command::new("/usr/bin/python3");
            c.arg(&script).args([host, port]).arg(cert).arg(key).args([user, password]).arg(maildir);
            c
        })
        .await
    }

    async fn start_with(extra: &[String], port: Option<u16>) -> Result<SmtpServer> {
        SmtpServer::spawn(port, |addr, maildir| {
            let mut c = Command::new("/usr/bin/python3");
            c.args(["-m", "aiosmtpd", "-n", "-l", addr, "-c", "aiosmtpd.handlers.Mailbox"]).args(extra).arg(maildir);
            c
        })
        .await
    }

    /// Starts the command `make(addr, maildir)` builds and waits until it listens.
    async fn spawn(port: Option<u16>, make: impl FnOnce(&str, &std::path::Path) -> Command) -> Result<SmtpServer> {
        let dir = TempDir::new()?;
        let maildir = dir.path().join("mail");
        let port = port.unwrap_or_else(free_port);
        let addr = format!("127.0.0.1:{port}");
        let child = make(&addr, &maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.path().join("smtp.log"))?))
            .spawn()
            .context("starting aiosmtpd (scripts/setup.sh installs python3-aiosmtpd)")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            if Instant::now() > deadline {
                bail!("aiosmtpd did not listen on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(SmtpServer { addr, maildir, _dir: dir, child })
    }

    /// Every message delivered so far, as raw RFC 5322 text.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in rd.flatten() {
                    if let Ok(t) = std::fs::read_to_string(e.path()) {
                        out.push(t);
                    }
                }
            }
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's prometheus-alertmanager on loopback, clustering off.
pub struct Alertmanager {
    pub url: String,
    _dir: TempDir,
    child: Child,
}

impl Alertmanager {
    pub async fn start() -> Result<Alertmanager> {
        let dir = TempDir::new()?;
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg, "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")?;
        let port = free_port();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.path().join("am.log"))?))
            .spawn()
            .context("starting prometheus-alertmanager (scripts/setup.sh installs it)")?;
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{url}/-/ready")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("alertmanager not ready at {url}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Alertmanager { url, _dir: dir, child })
    }

    /// The alerts it holds (its API v2).
    pub async fn alerts(&self) -> Result<Vec<serde_json::Value>> {
        let v: serde_json::Value = reqwest::get(format!("{}/api/v2/alerts", self.url)).await?.json().await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's Prometheus server on loopback with a given configuration (its own data in a temporary
/// directory); stopped when dropped.
pub struct PrometheusServer {
    pub port: u16,
    dir: TempDir,
    child: Child,
}

impl PrometheusServer {
    /// Starts it on `port` with `config` (prometheus.yml text).
    pub fn start(config: &str, port: u16) -> Result<PrometheusServer> {
        let dir = TempDir::new()?;
        std::fs::write(dir.path().join("prometheus.yml"), config)?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting prometheus (apt install prometheus; scripts/setup.sh does): {e}"))?;
        Ok(PrometheusServer { port, dir, child })
    }

    /// What it logged so far (for a failing test's output).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
