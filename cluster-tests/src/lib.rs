//! Harness for cluster tests: real `pharos` processes on loopback, each in its own temp dir on free ports,
//! stopped with real signals. Waits are conditions with deadlines, never bare sleeps.
//!
//! The binary is the one cargo built next to this test (`target/<profile>/pharos`), or `$PHAROS_BIN`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pharos_proto::v1::admin_client::AdminClient;
use pharos_proto::v1::{StatusRequest, StatusResponse};
use tempfile::TempDir;

pub mod faults;
pub mod history;
pub mod load;
pub mod netlab;
pub mod receivers;

pub fn pharos_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PHAROS_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> -> target/<profile>/pharos
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe.parent().and_then(|p| p.parent()).expect("target dir").join("pharos");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --bins` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A recent time (ms) on a 10 s boundary, one hour ago: inside every default retention.
pub fn recent_ms() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis()
                as i64;
        (now - 3_600_000) / 10_000 * 10_000
    })
}

/// A process's resident memory, from /proc (0 when it is gone).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1));
    kb.and_then(|k| k.parse::<u64>().ok()).unwrap_or(0) * 1024
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

pub struct NodeProc {
    pub id: u64,
    pub http: String,
    pub grpc: String,
    pub dir: TempDir,
    pub extra_config: String,
    initial_cluster: Option<String>,
    /// `--join ADDR` instead of `--initial-cluster`.
    pub join: Option<String>,
    /// Whether `--node-id` is given (a joining node may let the cluster assign it).
    pub give_id: bool,
    /// "https" when the node's `[tls]` is on.
    pub scheme: &'static str,
    /// Extra environment for the process (e.g. libfaketime's, for a node whose clock is off).
    pub env: Vec<(String, String)>,
    /// The network namespace it runs in ([`netlab::NetLab`]); the test's own when None.
    pub netns: Option<String>,
    child: Option<Child>,
}

impl NodeProc {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.http, path)
    }

    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("pharos.log"))?;
        let mut cmd = self.command("server")?;
        cmd.stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log));
        self.child = Some(cmd.spawn().context("spawning pharos")?);
        Ok(())
    }

    /// `pharos restore BACKUP` with the flags the node starts with (run before its first start); its
    /// output, failing with it when the restore fails.
    pub fn restore(&self, backup: &Path) -> Result<String> {
        let out = self.command("restore")?.arg(backup).output()?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("pharos restore {} for node {} failed: {text}", backup.display(), self.id);
        }
        Ok(text)
    }

    /// `pharos SUB` with this node's flags and environment.
    fn command(&self, sub: &str) -> Result<Command> {
        let cfg = self.dir.path().join("pharos.toml");
        std::fs::write(&cfg, &self.extra_config)?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(pharos_bin());
                c
            }
            None => Command::new(pharos_bin()),
        };
        cmd.arg(sub).arg("--config").arg(&cfg);
        if self.give_id {
            cmd.arg("--node-id").arg(self.id.to_string());
        }
        cmd.arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--http-addr")
            .arg(&self.http)
            .arg("--grpc-addr")
            .arg(&self.grpc)
            // The default log filter, as an operator gets it.
            .env_remove("PHAROS_LOG")
            .env_remove("RUST_LOG");
        if let Some(ic) = &self.initial_cluster {
            cmd.arg("--initial-cluster").arg(ic);
        }
        if let Some(j) = &self.join {
            cmd.arg("--join").arg(j);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(cmd)
    }

    /// Whether the process still runs (reaps it when it exited).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid().context("not running")?;
        let st = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status()?;
        if !st.success() {
            bail!("kill -{sig} {pid} failed");
        }
        Ok(())
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        self.signal("TERM")?;
        let mut c = self.child.take().context("not running")?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!("pharos did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pharos.log")).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if self.child.is_some() && (std::thread::panicking() || std::env::var_os("PHAROS_TEST_LOGS").is_some()) {
            eprintln!(
                "---- log of node {} ----\n{}",
                self.id,
                self.log()
                    .lines()
                    .rev()
                    .take(log_lines())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        self.kill();
    }
}

/// Lines of each node's log a failing test prints (`PHAROS_TEST_LOGS=N` prints N of every node's log
/// whether the test fails or not).
fn log_lines() -> usize {
    std::env::var("PHAROS_TEST_LOGS").ok().and_then(|v| v.parse().ok()).unwrap_or(40)
}

pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    pub http: reqwest::Client,
    /// A token the helpers (`status`, `pharosctl`) present, for clusters with auth on.
    pub token: Option<String>,
    /// The CA the helpers trust, for clusters with TLS on.
    pub tls_ca: Option<PathBuf>,
}

impl Cluster {
    /// Starts `n` nodes (a single node without --initial-cluster when n == 1) with extra TOML config.
    pub async fn start(n: usize, extra_config: &str) -> Result<Cluster> {
        Cluster::start_with(n, extra_config, None).await
    }

    /// [`Cluster::start`] for nodes whose config turns TLS on: the helpers speak HTTPS and gRPC over TLS,
    /// trusting `ca` (PEM).
    pub async fn start_with(n: usize, extra_config: &str, ca: Option<&Path>) -> Result<Cluster> {
        Cluster::start_on(n, extra_config, ca, None, None).await
    }

    /// A new cluster of `n` nodes built from a backup: `pharos restore` on each node, then its start.
    pub async fn restored(n: usize, extra_config: &str, backup: &Path) -> Result<Cluster> {
        Cluster::start_on(n, extra_config, None, None, Some(backup)).await
    }

    /// [`Cluster::start`] with node i in the lab's namespace i, on its address there.
    pub async fn start_in(lab: &netlab::NetLab, n: usize, extra_config: &str) -> Result<Cluster> {
        Cluster::start_on(n, extra_config, None, Some(lab), None).await
    }

    async fn start_on(
        n: usize,
        extra_config: &str,
        ca: Option<&Path>,
        lab: Option<&netlab::NetLab>,
        restore: Option<&Path>,
    ) -> Result<Cluster> {
        let specs: Vec<(u64, String, String)> = (1..=n as u64)
            .map(|i| match lab {
                Some(lab) => (i, format!("{}:8086", lab.addr(i as usize)), format!("{}:8087", lab.addr(i as usize))),
                None => (i, format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port())),
            })
            .collect();
        let ic = (n > 1).then(|| specs.iter().map(|(i, _, g)| format!("{i}={g}")).collect::<Vec<_>>().join(","));
        let mut nodes = Vec::new();
        for (id, http, grpc) in specs {
            let mut p = NodeProc {
                id,
                http,
                grpc,
                dir: TempDir::new()?,
                extra_config: extra_config.to_string(),
                initial_cluster: ic.clone(),
                join: None,
                give_id: true,
                scheme: if ca.is_some() { "https" } else { "http" },
                env: Vec::new(),
                netns: lab.map(|l| l.ns(id as usize)),
                child: None,
            };
            if let Some(backup) = restore {
                p.restore(backup)?;
            }
            p.start()?;
            nodes.push(p);
        }
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(ca) = ca {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca)?)?);
        }
        let c = Cluster { nodes, http: http.build()?, token: None, tls_ca: ca.map(Path::to_path_buf) };
        c.wait_healthy(Duration::from_secs(60)).await?;
        Ok(c)
    }

    /// Starts a node that joins through node `via` (`--join`), with `id` or, when None, the id the cluster
    /// assigns; waits until it is a member and healthy. Returns its id.
    pub async fn join(&mut self, via: u64, id: Option<u64>, extra_config: &str) -> Result<u64> {
        let via_addr = self.nodes.iter().find(|n| n.id == via).context("via node")?.grpc.clone();
        let mut p = NodeProc {
            id: id.unwrap_or(0),
            http: format!("127.0.0.1:{}", free_port()),
            grpc: format!("127.0.0.1:{}", free_port()),
            dir: TempDir::new()?,
            extra_config: extra_config.to_string(),
            initial_cluster: None,
            join: Some(via_addr),
            give_id: id.is_some(),
            scheme: if self.tls_ca.is_some() { "https" } else { "http" },
            env: Vec::new(),
            netns: None,
            child: None,
        };
        p.start()?;
        let grpc = p.grpc.clone();
        self.nodes.push(p);
        // Its id: the one the cluster registered for its address.
        let last_seen = std::sync::Mutex::new(String::new());
        let assigned = wait_for(Duration::from_secs(60), "the joining node to be a member", || async {
            let st = self.status(via).await?;
            *last_seen.lock().unwrap() = format!("{:#?}\nmeta: {:?}", st.nodes, st.meta);
            Ok(st.nodes.iter().find(|n| n.grpc_addr == grpc && !n.meta_role.is_empty()).map(|n| n.id))
        })
        .await
        .map_err(|e| {
            // Say why: the joining node's own account (it may have exited, or been refused), what the via node
            // last reported, and every other node's recent log.
            let mut why = format!("node {via} last reported:\n{}\n", last_seen.lock().unwrap());
            for n in &self.nodes {
                why.push_str(&format!("\nlog tail of node {} ({}):\n{}", n.id, n.grpc, tail(&n.log(), 30)));
            }
            e.context(why)
        })?;
        self.nodes.last_mut().expect("pushed").id = assigned;
        self.wait_healthy(Duration::from_secs(60)).await?;
        Ok(assigned)
    }

    /// Runs `pharosctl --addr <node id's gRPC> args...`; returns its stdout, failing with its output when it
    /// fails.
    pub fn pharosctl(&self, via: u64, args: &[&str]) -> Result<String> {
        let n = self.nodes.iter().find(|n| n.id == via).context("node")?;
        let mut cmd = Command::new(pharos_bin().with_file_name("pharosctl"));
        cmd.arg("--addr").arg(&n.grpc).env_remove("PHAROS_TOKEN");
        if let Some(t) = &self.token {
            cmd.env("PHAROS_TOKEN", t);
        }
        if let Some(ca) = &self.tls_ca {
            cmd.arg("--tls-ca").arg(ca);
        }
        let out = cmd.args(args).output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            bail!("pharosctl {args:?} failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(stdout)
    }

    pub fn node(&mut self, id: u64) -> &mut NodeProc {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    /// Waits until every running node answers /health with 200.
    pub async fn wait_healthy(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        for n in self.nodes.iter().filter(|n| n.pid().is_some()) {
            loop {
                let ok = matches!(self.http.get(n.url("/health")).send().await, Ok(r) if r.status() == 200);
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("node {} not healthy within {within:?}; log tail:\n{}", n.id, tail(&n.log(), 30));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    pub async fn status(&self, id: u64) -> Result<StatusResponse> {
        let n = self.nodes.iter().find(|n| n.id == id).context("node")?;
        let mut ep = tonic::transport::Endpoint::from_shared(format!("{}://{}", n.scheme, n.grpc))?;
        if let Some(ca) = &self.tls_ca {
            let cert = tonic::transport::Certificate::from_pem(std::fs::read(ca)?);
            ep = ep.tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(cert))?;
        }
        let mut c = AdminClient::new(ep.connect().await?);
        let mut req = tonic::Request::new(StatusRequest { local: false });
        if let Some(t) = &self.token {
            req.metadata_mut().insert("authorization", format!("Bearer {t}").parse()?);
        }
        Ok(c.status(req).await?.into_inner())
    }

    /// POSTs line protocol (ms precision) to a node; returns the HTTP status and body.
    pub async fn write(&self, id: u64, body: String) -> Result<(u16, String)> {
        let n = self.nodes.iter().find(|n| n.id == id).context("node")?;
        let r = self.http.post(n.url("/write?precision=ms")).body(body).send().await?;
        let code = r.status().as_u16();
        Ok((code, r.text().await.unwrap_or_default()))
    }

    /// Every sample of a measurement, read through node `id`: (series text, ts) -> value.
    pub async fn export(&self, id: u64, measurement: &str, stale: bool) -> Result<BTreeMap<(String, i64), f64>> {
        let n = self.nodes.iter().find(|n| n.id == id).context("node")?;
        let url = n.url(&format!("/api/v1/export?measurement={measurement}{}", if stale { "&stale=true" } else { "" }));
        let r = self.http.get(url).send().await?;
        if r.status() != 200 {
            bail!("export via node {id}: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        Ok(parse_export(&r.text().await?))
    }
}

/// Parses the export's `series field=value ts` lines (one field per line).
pub fn parse_export(text: &str) -> BTreeMap<(String, i64), f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.rsplitn(3, ' ');
        let ts: i64 = parts.next().and_then(|t| t.parse().ok()).expect("timestamp");
        let field = parts.next().expect("field");
        let series = parts.next().expect("series");
        let (fk, fv) = field.split_once('=').expect("field=value");
        out.insert((format!("{series} {fk}"), ts), fv.parse().expect("number"));
    }
    out
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits for `f` to return Ok(Some(..)) before the deadline.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}; last error: {last_err:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
