//! `pharosctl`: the admin CLI, over gRPC.

// A command-line tool: printing results is its job.
#![allow(clippy::print_stdout)]

use std::io::Read;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pharos_proto::v1::admin_client::AdminClient;
use pharos_proto::v1::query_client::QueryClient;
use pharos_proto::v1::write_client::WriteClient;
use pharos_proto::v1::{
    value, AddSilenceRequest, AlertsRequest, ApplyRoutingRequest, ApplyRulesRequest, ApplyScrapeRequest,
    CreateTokenRequest, DrainNodeRequest, ExpireSilenceRequest, GetRoutingRequest, GetRulesRequest, GetScrapeRequest,
    ListSilencesRequest, ListTokensRequest, QueryRequest, RebalanceRequest, RebalanceStatusRequest, RemoveNodeRequest,
    RevokeTokenRequest, SilenceInfo, StatusRequest, TargetsRequest, WriteRequest,
};

#[derive(Parser)]
#[command(name = "pharosctl", version, about = "Administer a Pharos cluster")]
struct Cli {
    /// gRPC address of any node (its --grpc-addr, not the HTTP port).
    #[arg(long, global = true, env = "PHAROS_ADDR", default_value = "127.0.0.1:8087")]
    addr: String,
    /// API token (`pharosctl token create` makes them; the first is the cluster's `[auth] admin_token`): reads
    /// need role read, writes write, changes admin.
    #[arg(long, global = true, env = "PHAROS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The CA (PEM) that signed the nodes' certificates: talk TLS to a node whose `[tls]` is on.
    #[arg(long, global = true, env = "PHAROS_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Nodes, shards with their replicas, leaders, applied index and lag.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Write line protocol from a file (or stdin with `-`).
    Write {
        /// File of line protocol; `-` reads stdin.
        #[arg(default_value = "-")]
        file: String,
        /// Timestamp precision of the lines: ns, us, ms or s.
        #[arg(long, default_value = "ns")]
        precision: String,
    },
    /// Alerting and recording rules (Prometheus rule-file YAML; expr is a Pharos query).
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Alert routing: receivers, the route tree and inhibit rules (Alertmanager's configuration shape).
    Routing {
        #[command(subcommand)]
        cmd: RoutingCmd,
    },
    /// Alert instances in the cluster: state, since when, value and labels.
    Alerts {
        /// Only these states (pending, firing, resolved); repeatable.
        #[arg(long)]
        state: Vec<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Silences mute matching alerts for a while.
    Silence {
        #[command(subcommand)]
        cmd: SilenceCmd,
    },
    /// The scrape configuration (Prometheus's `scrape_configs`; every node scrapes its share of the targets).
    Scrape {
        #[command(subcommand)]
        cmd: ScrapeCmd,
    },
    /// Every scrape target: health, last scrape, last error and the node that scrapes it.
    Targets {
        #[arg(long)]
        json: bool,
    },
    /// API tokens: make one for a role (read, write, admin), list them, revoke one.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Cluster members: list them, drain one, take one out.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Even out replicas and leaders over the nodes (restoring the replication factor first), or show or
    /// cancel the rebalance in progress.
    Rebalance {
        #[command(subcommand)]
        cmd: Option<RebalanceCmd>,
        /// Print the moves it would make, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Moves at once (each on another shard); 0: the cluster's `rebalance.max_concurrent`.
        #[arg(long, default_value_t = 0)]
        max_concurrent: u32,
        /// Return once the plan is stored instead of following it to the end.
        #[arg(long)]
        no_wait: bool,
    },
    /// Take an online backup of every shard and of the cluster's configuration into a new directory (on
    /// this machine): each part its group leader's data at a linearizable point, and a manifest with
    /// positions and SHA-256 sums, written last. `pharos restore DIR` builds a new cluster from it.
    Backup {
        /// A new or empty directory (or one a cut-off backup left: its pieces are kept).
        dir: std::path::PathBuf,
        /// An earlier backup on the same file system: the pieces it has are hard-linked, not written again
        /// (the new backup still stands on its own).
        #[arg(long)]
        incremental_from: Option<std::path::PathBuf>,
        /// Average piece size in KiB (tests use small ones).
        #[arg(long, default_value_t = 512, hide = true)]
        piece_kib: u32,
    },
    /// Which measurements, tag keys and tag values have the most series, and which measurements created
    /// the most in the last `--window` (a label explosion shows here first).
    Cardinality {
        /// Entries per list.
        #[arg(long, default_value_t = 10)]
        top: u32,
        /// "Created in the last": a duration such as 1h or 15m.
        #[arg(long, default_value = "1h")]
        window: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a query (several statements may be separated by `;`) and print the result.
    Query {
        /// The query, e.g. "SELECT mean(usage_user) FROM cpu WHERE time > now() - 1h GROUP BY time(5m), host".
        query: String,
        /// Output: an aligned table per series, CSV (name, tags, then the columns), or JSON lines (one
        /// object per series, InfluxDB's shape).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Read from any replica that heard from its leader within the election timeout, instead of a
        /// linearizable read: about a heartbeat behind the leaders on a healthy cluster.
        #[arg(long)]
        stale: bool,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Every node: id, addresses, state (active, draining, dead), replicas, leaders, disk used.
    #[command(visible_alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Move every replica and leadership off a node; it stays a member (for maintenance).
    Drain {
        id: u64,
        #[arg(long)]
        no_wait: bool,
    },
    /// Drain a node, then take it out of the cluster. `--dead`: the node is gone for good; its replicas
    /// are rebuilt on the other nodes from the surviving ones.
    Remove {
        id: u64,
        #[arg(long)]
        dead: bool,
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
enum RebalanceCmd {
    /// The plan in progress: moves queued, running (with their step), done and failed.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Start no more moves (running ones finish or roll back).
    Cancel,
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Validate a rule file locally (no server needed): shape, durations, labels, templates, queries.
    Check { file: String },
    /// Validate and store a rule file in the cluster (replaces the one in force).
    Apply {
        file: String,
        /// Only validate on the server.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the rule file in force and its version.
    #[command(visible_alias = "show")]
    List,
}

#[derive(Subcommand)]
enum RoutingCmd {
    /// Validate a routing file locally (no server needed).
    Check { file: String },
    /// Validate and store a routing file in the cluster (replaces the one in force).
    Apply {
        file: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the routing configuration in force and its version.
    #[command(visible_alias = "list")]
    Show,
}

#[derive(Subcommand)]
enum ScrapeCmd {
    /// Validate a scrape configuration locally (no server needed).
    Check { file: String },
    /// Validate and store it in the cluster (replaces the one in force; nodes pick it up within a second).
    Apply {
        file: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the configuration in force and its version.
    #[command(visible_alias = "list")]
    Show,
}

#[derive(Subcommand)]
enum SilenceCmd {
    /// Add a silence: `pharosctl silence add 'alertname="HighLoad"' 'host=~"web.*"' --duration 2h --comment ...`.
    Add {
        /// Matchers, Alertmanager syntax: name="v", name!="v", name=~"re", name!~"re".
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long from now (or from --start), e.g. 30m, 2h, 1d.
        #[arg(long, default_value = "1h")]
        duration: String,
        /// Start in RFC 3339 [default: now].
        #[arg(long)]
        start: Option<String>,
        /// Who is silencing [default: the OS user running pharosctl].
        #[arg(long)]
        author: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List silences (expired ones too).
    List {
        #[arg(long)]
        json: bool,
    },
    /// End a silence now.
    Expire { id: String },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Make a token. Its secret is printed once, alone on the last line (`T=$(pharosctl token create ... | tail -1)`);
    /// the cluster keeps only its hash.
    Create {
        /// A unique name (letters, digits, '_', '.', '-'), shown in logs and the audit trail.
        #[arg(long)]
        name: String,
        /// read (queries, export, alerts, status), write (every ingest path) or admin (everything).
        #[arg(long)]
        role: String,
        /// Refused after this long, e.g. 90d, 12h [default: never].
        #[arg(long)]
        expires: Option<String>,
    },
    /// Every token: name, role, created, expires (never the secret).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token now: it is refused from the next call on.
    Revoke { name: String },
}

/// An Admin client for the node at `ep`.
fn print_moves(what: &str, moves: &[pharos_proto::v1::Move]) {
    if moves.is_empty() {
        println!("{what}: nothing to move; the cluster is balanced");
        return;
    }
    println!("{what}: {} moves", moves.len());
    for m in moves {
        println!("  {}", describe(m));
    }
}

fn describe(m: &pharos_proto::v1::Move) -> String {
    match m.kind.as_str() {
        "replica" if m.from_node == 0 => format!("shard {:<4} new replica on node {}", m.shard, m.to_node),
        "replica" => format!("shard {:<4} replica node {} -> node {}", m.shard, m.from_node, m.to_node),
        "drop" => format!("shard {:<4} drop the replica on node {}", m.shard, m.from_node),
        _ => format!("shard {:<4} leader node {} -> node {}", m.shard, m.from_node, m.to_node),
    }
}

fn print_status(p: &pharos_proto::v1::RebalanceStatusResponse) {
    if p.plan_id == 0 {
        println!("no rebalance has run");
        return;
    }
    println!(
        "rebalance {}: {} planned, {} done, {} failed, {} running, {} queued{}",
        p.plan_id,
        p.planned,
        p.done,
        p.failed,
        p.running.len(),
        p.queued.len(),
        if p.cancelled { " (cancelled)" } else { "" }
    );
    for r in &p.running {
        if let Some(m) = &r.r#move {
            println!("  running: {} ({})", describe(m), r.step);
        }
    }
    if !p.last_error.is_empty() {
        println!("  last error: {}", p.last_error);
    }
}

/// Prints a plan's progress until it has run (every change once), and fails when moves failed.
async fn follow(c: &mut AdminClient<Conn>, plan: u64) -> anyhow::Result<()> {
    let mut last = String::new();
    loop {
        let p = c.rebalance_status(RebalanceStatusRequest { cancel: false }).await?.into_inner();
        if p.plan_id < plan {
            // The node answering has not applied the plan yet (its copy of the meta state lags a moment).
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        if p.plan_id != plan {
            println!(
                "another rebalance (plan {}) replaced this one; `pharosctl rebalance status` follows it",
                p.plan_id
            );
            return Ok(());
        }
        let line = format!(
            "{}/{} done, {} failed, running: {}",
            p.done,
            p.planned,
            p.failed,
            p.running
                .iter()
                .filter_map(|r| r.r#move.as_ref().map(|m| format!("shard {} ({})", m.shard, r.step)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if line != last {
            println!("{line}");
            last = line;
        }
        if p.queued.is_empty() && p.running.is_empty() {
            if p.failed > 0 {
                anyhow::bail!(
                    "{} moves failed (last: {}); run `pharosctl rebalance` again once the cause is fixed",
                    p.failed,
                    p.last_error
                );
            }
            println!("rebalance {plan} finished");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `pharosctl backup DIR`: the meta group, then every shard, each from its leader (found in the cluster's
/// status, asked again when leadership moved), stored as pieces (pharos_node::backup); the manifest last.
async fn run_backup(to: BackupTo<'_>) -> anyhow::Result<()> {
    use pharos_node::backup::{self, Manifest, Part};
    let (ep, token, prev) = (to.ep, to.token, to.prev);
    let started = std::time::Instant::now();
    if let Some(p) = prev {
        backup::read_manifest(p).map_err(|e| anyhow::anyhow!("--incremental-from: {e}"))?;
    }
    let dir = backup::prepare_dir(to.dir).map_err(anyhow::Error::msg)?;
    let to = BackupTo { dir: &dir, ..to };
    let mut c = admin(ep, token).await?;
    let mut status = c.status(StatusRequest { local: false }).await.map_err(|s| rpc_error(ep, s))?.into_inner();
    let shards = status.shards.len() as u32;
    if shards == 0 {
        anyhow::bail!("the cluster reports no shards yet (is it still starting?); try again");
    }
    let targets: Vec<Option<u32>> = std::iter::once(None).chain((0..shards).map(Some)).collect();
    let mut parts: Vec<Part> = Vec::new();
    let mut sum = backup::Stored::default();
    for (i, target) in targets.iter().enumerate() {
        let (part, st) = backup_part(&to, *target, &mut status).await?;
        eprintln!(
            "pharosctl backup: {}/{} {} at index {} from node {}: {} in {} pieces, {} new",
            i + 1,
            targets.len(),
            part.name(),
            part.index,
            part.from_node,
            human_bytes(part.bytes),
            part.pieces.len(),
            human_bytes(st.written)
        );
        sum.bytes += st.bytes;
        sum.written += st.written;
        sum.linked += st.linked;
        sum.kept += st.kept;
        parts.push(part);
    }
    let meta = parts.remove(0);
    let manifest = Manifest {
        format: backup::MANIFEST_FORMAT,
        finished_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        pharos_version: env!("CARGO_PKG_VERSION").into(),
        shards,
        replication_factor: status.replication_factor.max(1) as usize,
        meta,
        parts,
    };
    let tmp = dir.join(format!("{}.partial", backup::MANIFEST));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(backup::MANIFEST))?;
    std::fs::File::open(&dir)?.sync_all()?;
    println!(
        "backup of {shards} shards and the configuration in {}: {} ({} written, {} linked from the previous \
         backup, {} already there) in {:.1}s; restore with `pharos restore {}`",
        dir.display(),
        human_bytes(sum.bytes),
        human_bytes(sum.written),
        human_bytes(sum.linked),
        human_bytes(sum.kept),
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// Where a backup comes from and goes to.
#[derive(Clone, Copy)]
struct BackupTo<'a> {
    ep: &'a str,
    token: &'a Token,
    tls: bool,
    dir: &'a std::path::Path,
    /// The backup an incremental one builds on.
    prev: Option<&'a std::path::Path>,
    size: pharos_node::backup::PieceSize,
}

/// One part of a backup, from the group's leader; a few tries while leadership moves. The stream is cut
/// into pieces on a blocking thread as it arrives (bounded memory).
async fn backup_part(
    to: &BackupTo<'_>,
    target: Option<u32>,
    status: &mut pharos_proto::v1::StatusResponse,
) -> anyhow::Result<(pharos_node::backup::Part, pharos_node::backup::Stored)> {
    use pharos_node::backup::{store_part, Part};
    let (ep, token, size) = (to.ep, to.token, to.size);
    let what = pharos_node::backup::part_name(target);
    let mut last_err = String::new();
    for attempt in 0..10 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let mut c = admin(ep, token).await?;
            *status = c.status(StatusRequest { local: false }).await.map_err(|s| rpc_error(ep, s))?.into_inner();
        }
        let leader = match target {
            None => status.meta.as_ref().map(|m| m.leader).unwrap_or(0),
            Some(s) => status.shards.iter().find(|i| i.shard == s).map(|i| i.leader).unwrap_or(0),
        };
        let addr = status.nodes.iter().find(|n| n.id == leader).map(|n| endpoint(&n.grpc_addr, to.tls));
        let addr = addr.unwrap_or_else(|| ep.to_string());
        let mut c = match admin(&addr, token).await {
            Ok(c) => c,
            Err(e) => {
                last_err = format!("{e:#}");
                continue;
            }
        };
        let req = pharos_proto::v1::BackupRequest { meta: target.is_none(), shard: target.unwrap_or(0) };
        let mut stream = match c.backup(req).await {
            Ok(s) => s.into_inner(),
            Err(s) if matches!(s.code(), tonic::Code::FailedPrecondition | tonic::Code::Unavailable) => {
                last_err = s.message().to_string();
                continue;
            }
            Err(s) => return Err(rpc_error(&addr, s).context(format!("backing up {what}"))),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let (d, p) = (to.dir.to_path_buf(), to.prev.map(|p| p.to_path_buf()));
        let store = tokio::task::spawn_blocking(move || store_part(&d, p.as_deref(), size, ChanReader::new(rx)));
        let mut head = None;
        let (mut received, mut next_report) = (0u64, 256u64 << 20);
        let res: Result<(), tonic::Status> = async {
            while let Some(chunk) = stream.message().await? {
                if head.is_none() {
                    head = Some(chunk);
                    continue;
                }
                received += chunk.data.len() as u64;
                if tx.send(chunk.data).await.is_err() {
                    break; // the store failed: its error is reported below
                }
                if received >= next_report {
                    eprintln!("pharosctl backup: {what}: {} so far", human_bytes(received));
                    next_report += 256 << 20;
                }
            }
            Ok(())
        }
        .await;
        drop(tx);
        let stored = store.await?;
        match (res, head, stored) {
            (Ok(()), Some(h), Ok((_, bytes, _, _))) if bytes != h.total_bytes => {
                last_err = format!("the stream ended after {bytes} of {} bytes", h.total_bytes);
            }
            (Ok(()), Some(h), Ok((pieces, bytes, sha256, st))) => {
                let part = Part {
                    pieces,
                    shard: target,
                    index: h.index,
                    term: h.term,
                    leader: h.leader,
                    snapshot_format: h.snapshot_format,
                    from_node: h.from_node,
                    bytes,
                    sha256,
                };
                return Ok((part, st));
            }
            // Writing the backup failed (a full disk): no use asking again.
            (_, _, Err(e)) => anyhow::bail!("backing up {what}: {e}"),
            (Ok(()), None, _) => last_err = "the stream ended before its first message".into(),
            // The leader changed or went away mid-stream: the part is taken again (the pieces stored so far
            // are kept and reused).
            (Err(s), _, _) => last_err = s.message().to_string(),
        }
    }
    anyhow::bail!("backing up {what} failed after 10 tries: {last_err}")
}

/// The bytes a tokio channel delivers, as a blocking reader (for the piece cutter's thread).
struct ChanReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl ChanReader {
    fn new(rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        ChanReader { rx, buf: Vec::new(), pos: 0 }
    }
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(b) => (self.buf, self.pos) = (b, 0),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn print_cardinality(r: &pharos_proto::v1::CardinalityResponse, json: bool) -> anyhow::Result<()> {
    let since = (r.created_since_ms > 0).then(|| ms_to_rfc3339(r.created_since_ms));
    if json {
        let list = |v: &[pharos_proto::v1::CardinalityEntry]| -> Vec<serde_json::Value> {
            v.iter()
                .map(|e| serde_json::json!({"name": e.name, "series": e.series, "created": e.created, "values": e.values}))
                .collect()
        };
        let v = serde_json::json!({
            "series": r.series, "created_since": since, "measurements": list(&r.measurements),
            "tag_keys": list(&r.tag_keys), "tag_pairs": list(&r.tag_pairs),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{} series in the cluster", r.series);
    let created = match &since {
        Some(s) => format!("CREATED SINCE {s}"),
        None => "CREATED (unknown: no maintenance pass yet)".into(),
    };
    println!("\n{:<40} {:>12} {created}", "MEASUREMENT", "SERIES");
    for e in &r.measurements {
        println!("{:<40} {:>12} {}", e.name, e.series, e.created);
    }
    println!("\n{:<40} {:>12} VALUES (at least)", "TAG KEY", "SERIES");
    for e in &r.tag_keys {
        println!("{:<40} {:>12} {}", e.name, e.series, e.values);
    }
    println!("\n{:<52} SERIES", "TAG PAIR");
    for e in &r.tag_pairs {
        println!("{:<52} {}", e.name, e.series);
    }
    Ok(())
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b < 1024 => format!("{b}B"),
        b if b >= 1 << 30 => format!("{:.1}GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.0}KiB", b as f64 / 1024.0),
    }
}

/// Every request carries the token given with `--token` (or PHAROS_TOKEN) as `authorization: Bearer`; with
/// `--tls-ca`, over TLS verified against that CA.
#[derive(Clone)]
struct Token(Option<tonic::metadata::AsciiMetadataValue>, Option<tonic::transport::ClientTlsConfig>);

impl Token {
    fn new(token: &Option<String>, ca: &Option<std::path::PathBuf>) -> anyhow::Result<Token> {
        let tls = match ca {
            None => None,
            Some(p) => {
                let pem =
                    std::fs::read(p).with_context(|| format!("reading the CA file {} (--tls-ca)", p.display()))?;
                let cert = tonic::transport::Certificate::from_pem(pem);
                Some(tonic::transport::ClientTlsConfig::new().ca_certificate(cert))
            }
        };
        match token {
            None => Ok(Token(None, tls)),
            Some(t) => Ok(Token(
                Some(format!("Bearer {t}").parse().context("the token has characters a header cannot carry")?),
                tls,
            )),
        }
    }
}

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

type Conn = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Token>;

async fn channel(ep: &str, token: &Token) -> anyhow::Result<tonic::transport::Channel> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(ep.to_string())
        .with_context(|| format!("{ep} is not a valid address; pass --addr host:port"))?;
    if let Some(tls) = &token.1 {
        endpoint = endpoint.tls_config(tls.clone()).context("TLS setup (--tls-ca)")?;
    }
    endpoint.connect().await.map_err(|e| unreachable_error(ep, e))
}

async fn admin(ep: &str, token: &Token) -> anyhow::Result<AdminClient<Conn>> {
    Ok(AdminClient::with_interceptor(channel(ep, token).await?, token.clone()))
}

fn unreachable_error(ep: &str, e: tonic::transport::Error) -> anyhow::Error {
    anyhow::Error::new(e).context(format!(
        "cannot reach a Pharos node at {ep}; pass the gRPC address of a running node with --addr host:port \
         (or PHAROS_ADDR; default 127.0.0.1:8087)"
    ))
}

/// A failed call as the user should read it. An answer in plain HTTP instead of gRPC (tonic reports "grpc-status
/// header missing, mapped from HTTP status code 404") means `--addr` names an HTTP port, most likely
/// Pharos's own `--http-addr`.
fn rpc_error(ep: &str, s: tonic::Status) -> anyhow::Error {
    let msg = s.message();
    if msg.contains("grpc-status header missing") || msg.contains("mapped from HTTP status code") {
        return anyhow::anyhow!(
            "{ep} answered in plain HTTP, not gRPC: that is an HTTP port (Pharos's --http-addr, 8086 by default?). \
             pharosctl talks to the gRPC port: pass --addr host:GRPC_PORT (a node's --grpc-addr, default \
             127.0.0.1:8087) or set PHAROS_ADDR"
        );
    }
    match s.code() {
        tonic::Code::Unavailable if msg.contains("transport error") || msg.contains("tcp connect") => {
            anyhow::anyhow!("{msg}; is a Pharos node running at {ep}? pass its gRPC address with --addr")
        }
        _ => anyhow::anyhow!("{msg}"),
    }
}

/// Who runs pharosctl, for `silence add` without `--author`: $USER, else $LOGNAME, else the OS account name.
fn os_user() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.trim().is_empty())
        .or_else(|| whoami::fallible::username().ok())
}

fn read_file(file: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
}

/// What `apply` did: validated only (`--dry-run`), or stored as a new version.
fn print_applied(file: &str, dry_run: bool, version: u64, summary: &str) {
    if dry_run {
        println!("{file}: valid ({summary}); nothing stored");
    } else {
        println!("{file}: applied as version {version} ({summary})");
    }
}

/// A configuration file stored in the cluster with its version, or `none` when nothing was applied yet.
fn print_stored(version: u64, text: &str, none: &str) {
    if version == 0 {
        println!("{none}");
    } else {
        println!("# version {version}\n{text}");
    }
}

fn ms_to_rfc3339(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

fn tags_text(tags: &[pharos_proto::v1::Tag]) -> String {
    let inner: Vec<String> = tags.iter().map(|t| format!("{}={:?}", t.key, t.value)).collect();
    format!("{{{}}}", inner.join(", "))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

/// One series as it arrives (possibly in several messages).
struct Printed {
    statement: u32,
    name: String,
    tags: Vec<(String, String)>,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    json_rows: Vec<Vec<serde_json::Value>>,
}

fn cell(v: &pharos_proto::v1::Value) -> (String, serde_json::Value) {
    match &v.kind {
        Some(value::Kind::Number(n)) => (n.to_string(), serde_json::json!(n)),
        Some(value::Kind::Text(t)) => (t.clone(), serde_json::json!(t)),
        Some(value::Kind::TimeMs(ms)) => {
            let t = chrono::DateTime::from_timestamp_millis(*ms)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_else(|| ms.to_string());
            (t.clone(), serde_json::json!(t))
        }
        Some(value::Kind::Null(_)) | None => (String::new(), serde_json::Value::Null),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn print_series(all: &[Printed], format: Format) {
    match format {
        Format::Json => {
            for p in all {
                let tags: serde_json::Map<String, serde_json::Value> =
                    p.tags.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
                let obj = serde_json::json!({"statement_id": p.statement, "name": p.name, "tags": tags,
                    "columns": p.columns, "values": p.json_rows});
                println!("{obj}");
            }
        }
        Format::Csv => {
            let mut header: Option<&[String]> = None;
            for p in all {
                if header != Some(&p.columns[..]) {
                    let cols: Vec<String> = p.columns.iter().map(|c| csv_field(c)).collect();
                    println!("name,tags,{}", cols.join(","));
                    header = Some(&p.columns[..]);
                }
                let tags: Vec<String> = p.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for r in &p.rows {
                    let cells: Vec<String> = r.iter().map(|c| csv_field(c)).collect();
                    println!("{},{},{}", csv_field(&p.name), csv_field(&tags.join(",")), cells.join(","));
                }
            }
        }
        Format::Table => {
            for (i, p) in all.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                let tags: Vec<String> = p.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                match (p.name.is_empty(), tags.is_empty()) {
                    (false, true) => println!("name: {}", p.name),
                    (false, false) => println!("name: {}\ntags: {}", p.name, tags.join(", ")),
                    (true, false) => println!("tags: {}", tags.join(", ")),
                    (true, true) => {}
                }
                let mut widths: Vec<usize> = p.columns.iter().map(|c| c.chars().count()).collect();
                for r in &p.rows {
                    for (w, c) in widths.iter_mut().zip(r) {
                        *w = (*w).max(c.chars().count());
                    }
                }
                let line = |cells: &[String]| {
                    cells
                        .iter()
                        .zip(&widths)
                        .map(|(c, w)| format!("{c:<w$}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                        .trim_end()
                        .to_string()
                };
                println!("{}", line(&p.columns));
                println!("{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join(" "));
                for r in &p.rows {
                    println!("{}", line(r));
                }
            }
        }
    }
}

fn endpoint(addr: &str, tls: bool) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`pharosctl status | head`) panicked; with the
    // default action the process ends quietly as other command-line tools do.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ep = endpoint(&cli.addr, cli.tls_ca.is_some());
    let token = Token::new(&cli.token, &cli.tls_ca)?;
    match cli.cmd {
        Cmd::Status { json } => {
            let mut c = admin(&ep, &token).await?;
            let s = c.status(StatusRequest { local: false }).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
            if json {
                let v = serde_json::json!({
                    "node_id": s.node_id,
                    "nodes": s.nodes.iter().map(|n| serde_json::json!({"id": n.id, "grpc": n.grpc_addr, "http": n.http_addr, "reachable": n.reachable})).collect::<Vec<_>>(),
                    "shards": s.shards.iter().map(|sh| serde_json::json!({"shard": sh.shard, "replicas": sh.replicas, "leader": sh.leader, "term": sh.term, "applied": sh.applied_index, "last_log": sh.last_log_index, "purged": sh.purged_index, "lag": sh.lag})).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("answered by node {}", s.node_id);
            println!("\nNODE  GRPC                   HTTP                   REACHABLE");
            for n in &s.nodes {
                println!(
                    "{:<5} {:<22} {:<22} {}",
                    n.id,
                    n.grpc_addr,
                    if n.http_addr.is_empty() { "-" } else { &n.http_addr },
                    if n.reachable { "yes" } else { "no" }
                );
            }
            println!("\nSHARD  REPLICAS      LEADER  TERM  APPLIED   LAST_LOG  LAG");
            for sh in &s.shards {
                let reps = sh.replicas.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",");
                let mut lag: Vec<_> = sh.lag.iter().map(|(n, l)| format!("{n}:{l}")).collect();
                lag.sort();
                let leader = if sh.leader == 0 { "none".to_string() } else { sh.leader.to_string() };
                println!(
                    "{:<6} {:<13} {:<7} {:<5} {:<9} {:<9} {}",
                    sh.shard,
                    reps,
                    leader,
                    sh.term,
                    sh.applied_index,
                    sh.last_log_index,
                    if lag.is_empty() { "-".into() } else { lag.join(" ") }
                );
            }
            if let Some(m) = &s.meta {
                println!("\nmeta group: voters {:?}, leader {}, applied {}", m.replicas, m.leader, m.applied_index);
            }
            let leaderless = s.shards.iter().filter(|sh| sh.leader == 0).count();
            if leaderless > 0 {
                eprintln!(
                    "\nwarning: {leaderless} shard(s) have no leader; check that a majority of their replicas run"
                );
            }
        }
        Cmd::Node { cmd: NodeCmd::List { json } } => {
            let mut c = admin(&ep, &token).await?;
            let s = c.status(StatusRequest { local: false }).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
            if json {
                for n in &s.nodes {
                    let v = serde_json::json!({"id": n.id, "grpc": n.grpc_addr, "http": n.http_addr, "state": n.state,
                        "reachable": n.reachable, "replicas": n.replicas, "leaders": n.leaders,
                        "disk_bytes": n.disk_bytes, "meta": n.meta_role});
                    println!("{v}");
                }
                return Ok(());
            }
            println!("NODE  GRPC                   HTTP                   STATE     REACHABLE  REPLICAS  LEADERS  DISK      META");
            for n in &s.nodes {
                println!(
                    "{:<5} {:<22} {:<22} {:<9} {:<10} {:<9} {:<8} {:<9} {}",
                    n.id,
                    n.grpc_addr,
                    if n.http_addr.is_empty() { "-" } else { &n.http_addr },
                    n.state,
                    if n.reachable { "yes" } else { "no" },
                    n.replicas,
                    n.leaders,
                    if n.reachable { human_bytes(n.disk_bytes) } else { "-".into() },
                    if n.meta_role.is_empty() { "-" } else { &n.meta_role },
                );
            }
        }
        Cmd::Node { cmd: NodeCmd::Drain { id, no_wait } } => {
            let mut c = admin(&ep, &token).await?;
            let r = c.drain_node(DrainNodeRequest { node_id: id }).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
            print_moves(&format!("draining node {id}"), &r.moves);
            if !no_wait {
                follow(&mut c, r.plan_id).await?;
            }
        }
        Cmd::Node { cmd: NodeCmd::Remove { id, dead, no_wait } } => {
            let mut c = admin(&ep, &token).await?;
            let r = c
                .remove_node(RemoveNodeRequest { node_id: id, dead })
                .await
                .map_err(|s| rpc_error(&ep, s))?
                .into_inner();
            print_moves(&format!("removing node {id}{}", if dead { " (dead)" } else { "" }), &r.moves);
            if !no_wait {
                follow(&mut c, r.plan_id).await?;
                // The node leaves the membership once it holds nothing.
                let started = std::time::Instant::now();
                loop {
                    let s = c.status(StatusRequest { local: false }).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
                    if !s.nodes.iter().any(|n| n.id == id) {
                        println!("node {id} left the cluster");
                        break;
                    }
                    if started.elapsed() > std::time::Duration::from_secs(60) {
                        anyhow::bail!("node {id} still holds replicas or meta membership after a minute; see `pharosctl rebalance status` and the nodes' logs");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
        Cmd::Cardinality { top, window, json } => {
            let window = pharos_alert::PromDuration::parse(&window)
                .map_err(|e| anyhow::anyhow!("--window {window:?}: {e} (a duration such as 1h)"))?;
            let mut c = admin(&ep, &token).await?;
            let req = pharos_proto::v1::CardinalityRequest { top, window_ms: window.ms() };
            let r = c.cardinality(req).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
            print_cardinality(&r, json)?;
        }
        Cmd::Backup { dir, incremental_from, piece_kib } => {
            let size = pharos_node::backup::PieceSize { avg: piece_kib.saturating_mul(1024) };
            let tls = cli.tls_ca.is_some();
            run_backup(BackupTo { ep: &ep, token: &token, tls, dir: &dir, prev: incremental_from.as_deref(), size })
                .await?
        }
        Cmd::Rebalance { cmd: Some(RebalanceCmd::Status { json }), .. } => {
            let mut c = admin(&ep, &token).await?;
            let p = c
                .rebalance_status(RebalanceStatusRequest { cancel: false })
                .await
                .map_err(|s| rpc_error(&ep, s))?
                .into_inner();
            if json {
                let mv = |m: &pharos_proto::v1::Move| serde_json::json!({"shard": m.shard, "kind": m.kind, "from": m.from_node, "to": m.to_node});
                let v = serde_json::json!({"plan": p.plan_id, "planned": p.planned, "done": p.done, "failed": p.failed,
                    "cancelled": p.cancelled, "last_error": p.last_error,
                    "queued": p.queued.iter().map(mv).collect::<Vec<_>>(),
                    "running": p.running.iter().map(|r| serde_json::json!({"move": r.r#move.as_ref().map(mv), "step": r.step, "started_at_ms": r.started_at_ms})).collect::<Vec<_>>()});
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            print_status(&p);
        }
        Cmd::Rebalance { cmd: Some(RebalanceCmd::Cancel), .. } => {
            let mut c = admin(&ep, &token).await?;
            let p = c
                .rebalance_status(RebalanceStatusRequest { cancel: true })
                .await
                .map_err(|s| rpc_error(&ep, s))?
                .into_inner();
            println!("rebalance {} cancelled: no new moves start; {} running finish", p.plan_id, p.running.len());
        }
        Cmd::Rebalance { cmd: None, dry_run, max_concurrent, no_wait } => {
            let mut c = admin(&ep, &token).await?;
            let req = RebalanceRequest { dry_run, max_concurrent };
            let r = c.rebalance(req).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
            print_moves(if dry_run { "rebalance (dry run, nothing changes)" } else { "rebalance" }, &r.moves);
            if !dry_run && !no_wait && !r.moves.is_empty() {
                follow(&mut c, r.plan_id).await?;
            }
        }
        Cmd::Write { file, precision } => {
            let mut body = String::new();
            if file == "-" {
                std::io::stdin().read_to_string(&mut body).context("reading stdin")?;
            } else {
                body = read_file(&file)?;
            }
            let mut c = WriteClient::with_interceptor(channel(&ep, &token).await?, token.clone());
            let r = c
                .write(WriteRequest { points: Vec::new(), line_protocol: body, precision })
                .await
                .map_err(|s| rpc_error(&ep, s).context("write refused"))?
                .into_inner();
            println!("wrote {} points ({} samples)", r.points_written, r.samples_written);
        }
        Cmd::Rules { cmd } => match cmd {
            RulesCmd::Check { file } => {
                let text = read_file(&file)?;
                match pharos_node::alerting::validate(Some(&file), &text) {
                    Ok((groups, rules)) => println!("{file}: ok ({groups} groups, {rules} rules)"),
                    Err(problems) => anyhow::bail!("invalid rule file\n{problems}"),
                }
            }
            RulesCmd::Apply { file, dry_run } => {
                let text = read_file(&file)?;
                let mut c = admin(&ep, &token).await?;
                let r = c
                    .apply_rules(ApplyRulesRequest { text, dry_run })
                    .await
                    .map_err(|s| rpc_error(&ep, s).context(file.clone()))?
                    .into_inner();
                print_applied(&file, dry_run, r.version, &format!("{} groups, {} rules", r.groups, r.rules));
            }
            RulesCmd::List => {
                let mut c = admin(&ep, &token).await?;
                let r = c.get_rules(GetRulesRequest {}).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
                print_stored(r.version, &r.text, "no rules applied yet (pharosctl rules apply FILE)");
            }
        },
        Cmd::Routing { cmd } => match cmd {
            RoutingCmd::Check { file } => {
                let text = read_file(&file)?;
                match pharos_node::alerting::validate_routing(Some(&file), &text) {
                    Ok(n) => println!("{file}: ok ({n} receivers)"),
                    Err(problems) => anyhow::bail!("invalid routing file\n{problems}"),
                }
            }
            RoutingCmd::Apply { file, dry_run } => {
                let text = read_file(&file)?;
                let mut c = admin(&ep, &token).await?;
                let r = c
                    .apply_routing(ApplyRoutingRequest { text, dry_run })
                    .await
                    .map_err(|s| rpc_error(&ep, s).context(file.clone()))?
                    .into_inner();
                print_applied(&file, dry_run, r.version, &format!("{} receivers", r.receivers));
            }
            RoutingCmd::Show => {
                let mut c = admin(&ep, &token).await?;
                let r = c.get_routing(GetRoutingRequest {}).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
                print_stored(
                    r.version,
                    &r.text,
                    "no routing applied yet (pharosctl routing apply FILE): alerts fire but notify no one",
                );
            }
        },
        Cmd::Scrape { cmd } => match cmd {
            ScrapeCmd::Check { file } => {
                let text = read_file(&file)?;
                match pharos_scrape::parse_config(&text) {
                    Ok(c) => println!("{file}: ok ({} jobs)", c.scrape_configs.len()),
                    Err(e) => anyhow::bail!("invalid scrape configuration\n{file}: {e}"),
                }
            }
            ScrapeCmd::Apply { file, dry_run } => {
                let text = read_file(&file)?;
                let mut c = admin(&ep, &token).await?;
                let r = c
                    .apply_scrape(ApplyScrapeRequest { text, dry_run })
                    .await
                    .map_err(|s| rpc_error(&ep, s).context(file.clone()))?
                    .into_inner();
                print_applied(&file, dry_run, r.version, &format!("{} jobs", r.jobs));
            }
            ScrapeCmd::Show => {
                let mut c = admin(&ep, &token).await?;
                let r = c.get_scrape(GetScrapeRequest {}).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
                print_stored(r.version, &r.text, "no scrape configuration applied (pharosctl scrape apply FILE); nodes use [scrape] config_file if set");
            }
        },
        Cmd::Targets { json } => {
            let mut c = admin(&ep, &token).await?;
            let r = c.targets(TargetsRequest { local: false }).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
            if json {
                for t in &r.targets {
                    let tags: serde_json::Map<String, serde_json::Value> =
                        t.labels.iter().map(|t| (t.key.clone(), serde_json::json!(t.value))).collect();
                    println!(
                        "{}",
                        serde_json::json!({"job": t.job, "url": t.url, "labels": tags, "health": t.health,
                            "last_scrape_ms": t.last_scrape_ms, "last_duration_ms": t.last_duration_ms,
                            "last_error": t.last_error, "last_samples": t.last_samples, "owner": t.owner})
                    );
                }
                return Ok(());
            }
            if r.targets.is_empty() {
                let applied = c.get_scrape(GetScrapeRequest {}).await.map(|r| r.into_inner().version).unwrap_or(0);
                if applied == 0 {
                    println!("no targets: no scrape configuration is applied (pharosctl scrape apply FILE)");
                } else {
                    println!(
                        "no targets yet: configuration version {applied} reaches every node within a second, and \
                         file, HTTP and DNS discovery report at their own pace"
                    );
                }
                return Ok(());
            }
            println!(
                "{:<16} {:<7} {:<5} {:<21} {:>9} {:>8}  {:<40} ERROR",
                "JOB", "HEALTH", "NODE", "LAST SCRAPE", "DURATION", "SAMPLES", "URL"
            );
            for t in &r.targets {
                println!(
                    "{:<16} {:<7} {:<5} {:<21} {:>7.1}ms {:>8}  {:<40} {}",
                    t.job,
                    t.health,
                    t.owner,
                    ms_to_rfc3339(t.last_scrape_ms),
                    t.last_duration_ms,
                    t.last_samples,
                    t.url,
                    t.last_error
                );
            }
        }
        Cmd::Alerts { state, json } => {
            let mut c = admin(&ep, &token).await?;
            let r = c.alerts(AlertsRequest { states: state }).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
            if json {
                for a in &r.alerts {
                    let tags = |t: &[pharos_proto::v1::Tag]| -> serde_json::Map<String, serde_json::Value> {
                        t.iter().map(|t| (t.key.clone(), serde_json::json!(t.value))).collect()
                    };
                    println!(
                        "{}",
                        serde_json::json!({"rule": a.rule, "group": a.group, "state": a.state,
                            "active_since_ms": a.active_since_ms, "fired_at_ms": a.fired_at_ms,
                            "resolved_at_ms": a.resolved_at_ms, "value": a.value,
                            "labels": tags(&a.labels), "annotations": tags(&a.annotations)})
                    );
                }
                return Ok(());
            }
            if r.alerts.is_empty() {
                println!("no alerts");
                return Ok(());
            }
            println!("{:<24} {:<9} {:<21} {:>12}  LABELS", "RULE", "STATE", "SINCE", "VALUE");
            for a in &r.alerts {
                let since = match a.state.as_str() {
                    "firing" => a.fired_at_ms,
                    "resolved" => a.resolved_at_ms,
                    _ => a.active_since_ms,
                };
                println!(
                    "{:<24} {:<9} {:<21} {:>12}  {}",
                    a.rule,
                    a.state,
                    ms_to_rfc3339(since),
                    format!("{}", a.value),
                    tags_text(&a.labels)
                );
            }
        }
        Cmd::Token { cmd } => {
            let mut c = admin(&ep, &token).await?;
            match cmd {
                TokenCmd::Create { name, role, expires } => {
                    let expires_in_ms = match &expires {
                        None => 0,
                        Some(e) => pharos_alert::PromDuration::parse(e)
                            .map_err(|why| anyhow::anyhow!("--expires {e:?}: {why} (e.g. 90d, 12h)"))?
                            .ms()
                            .max(0) as u64,
                    };
                    let r = c
                        .create_token(CreateTokenRequest { name, role, expires_in_ms })
                        .await
                        .map_err(|s| rpc_error(&ep, s))?
                        .into_inner();
                    let t = r.token.unwrap_or_default();
                    let until = if t.expires_ms == 0 { "never".to_string() } else { ms_to_rfc3339(t.expires_ms) };
                    println!("token {} (role {}, expires {until}); its secret, shown only now:", t.name, t.role);
                    println!("{}", r.secret);
                }
                TokenCmd::List { json } => {
                    let r = c.list_tokens(ListTokensRequest {}).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
                    let until = |ms: i64| if ms == 0 { "never".to_string() } else { ms_to_rfc3339(ms) };
                    for t in &r.tokens {
                        if json {
                            println!(
                                "{}",
                                serde_json::json!({"name": t.name, "role": t.role, "created_ms": t.created_ms,
                                    "expires_ms": t.expires_ms})
                            );
                        } else {
                            println!(
                                "{:<24} {:<6} created {}  expires {}",
                                t.name,
                                t.role,
                                ms_to_rfc3339(t.created_ms),
                                until(t.expires_ms)
                            );
                        }
                    }
                    if r.tokens.is_empty() && !json {
                        println!("no tokens (the admin token in the nodes' configuration is not listed)");
                    }
                }
                TokenCmd::Revoke { name } => {
                    c.revoke_token(RevokeTokenRequest { name: name.clone() }).await.map_err(|s| rpc_error(&ep, s))?;
                    println!("token {name} revoked");
                }
            }
        }
        Cmd::Silence { cmd } => {
            let mut c = admin(&ep, &token).await?;
            match cmd {
                SilenceCmd::Add { matchers, duration, start, author, comment } => {
                    let dur = pharos_alert::PromDuration::parse(&duration)
                        .map_err(|e| anyhow::anyhow!("--duration {duration:?}: {e} (e.g. 30m, 2h, 1d)"))?;
                    let starts_at = match &start {
                        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                            .with_context(|| format!("--start {s:?} is not RFC 3339 (2026-11-25T10:00:00Z)"))?
                            .timestamp_millis(),
                        None => chrono::Utc::now().timestamp_millis(),
                    };
                    let author = author.or_else(os_user).ok_or_else(|| {
                        anyhow::anyhow!(
                            "cannot tell who you are from the environment: say who silences with --author NAME"
                        )
                    })?;
                    let info = SilenceInfo {
                        id: String::new(),
                        matchers,
                        starts_at_ms: starts_at,
                        ends_at_ms: starts_at + dur.ms(),
                        created_by: author,
                        comment,
                        state: String::new(),
                    };
                    let r = c
                        .add_silence(AddSilenceRequest { silence: Some(info) })
                        .await
                        .map_err(|s| rpc_error(&ep, s))?
                        .into_inner();
                    println!("{}", r.id);
                }
                SilenceCmd::List { json } => {
                    let r = c.list_silences(ListSilencesRequest {}).await.map_err(|s| rpc_error(&ep, s))?.into_inner();
                    for s in &r.silences {
                        if json {
                            println!(
                                "{}",
                                serde_json::json!({"id": s.id, "matchers": s.matchers, "starts_at_ms": s.starts_at_ms,
                                    "ends_at_ms": s.ends_at_ms, "created_by": s.created_by, "comment": s.comment,
                                    "state": s.state})
                            );
                        } else {
                            println!(
                                "{}  {:<8} {} .. {}  {}  by {}: {}",
                                s.id,
                                s.state,
                                ms_to_rfc3339(s.starts_at_ms),
                                ms_to_rfc3339(s.ends_at_ms),
                                s.matchers.join(", "),
                                s.created_by,
                                s.comment
                            );
                        }
                    }
                    if r.silences.is_empty() && !json {
                        println!("no silences");
                    }
                }
                SilenceCmd::Expire { id } => {
                    c.expire_silence(ExpireSilenceRequest { id: id.clone() }).await.map_err(|s| rpc_error(&ep, s))?;
                    println!("expired {id}");
                }
            }
        }
        Cmd::Query { query, format, stale } => {
            let mut c = QueryClient::with_interceptor(channel(&ep, &token).await?, token.clone());
            let (all, failure) = run_query(&mut c, &ep, &query, stale).await?;
            print_series(&all, format);
            if failure.is_none() {
                explain_empty(&mut c, &ep, &query, &all, format).await;
            }
            if let Some(f) = failure {
                anyhow::bail!("{f}");
            }
        }
    }
    Ok(())
}

/// Runs a query and gathers its series (raw queries stream each series in pieces); a statement's failure
/// after some results comes back beside them.
async fn run_query(
    c: &mut QueryClient<Conn>,
    ep: &str,
    query: &str,
    stale: bool,
) -> anyhow::Result<(Vec<Printed>, Option<String>)> {
    let mut stream = c
        .query(QueryRequest { query: query.to_string(), allow_stale: stale })
        .await
        .map_err(|s| rpc_error(ep, s))?
        .into_inner();
    let mut all: Vec<Printed> = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(msg)) => {
                for s in msg.series {
                    let tags: Vec<(String, String)> = s.tags.into_iter().map(|t| (t.key, t.value)).collect();
                    // Columns come with the first piece of a series; later pieces (raw queries are streamed in
                    // time windows, so pieces of several series interleave) continue it.
                    let at = all.iter().position(|l| {
                        s.columns.is_empty() && l.statement == msg.statement && l.name == s.name && l.tags == tags
                    });
                    let at = match at {
                        Some(i) => i,
                        None => {
                            all.push(Printed {
                                statement: msg.statement,
                                name: s.name,
                                tags,
                                columns: s.columns,
                                rows: vec![],
                                json_rows: vec![],
                            });
                            all.len() - 1
                        }
                    };
                    let last = &mut all[at];
                    for r in s.rows {
                        let (text, json): (Vec<String>, Vec<serde_json::Value>) = r.values.iter().map(cell).unzip();
                        last.rows.push(text);
                        last.json_rows.push(json);
                    }
                }
            }
            Ok(None) => return Ok((all, None)),
            Err(s) => return Ok((all, Some(s.message().to_string()))),
        }
    }
}

/// Field and tag names a projection reads (`mean(usage_user) * 2` reads `usage_user`), with their kind.
fn projected_names(e: &pharos_query::ast::Expr, out: &mut Vec<(String, pharos_query::ast::IdentKind)>) {
    use pharos_query::ast::Expr;
    match e {
        Expr::Ident { name, kind, .. } if name != "time" => out.push((name.clone(), *kind)),
        Expr::Call { args, .. } => args.iter().for_each(|a| projected_names(a, out)),
        Expr::Binary { lhs, rhs, .. } => {
            projected_names(lhs, out);
            projected_names(rhs, out);
        }
        Expr::Neg { expr, .. } => projected_names(expr, out),
        _ => {}
    }
}

/// The first column of every row of a one-statement query's answer (names listed by SHOW ... KEYS).
async fn first_column(c: &mut QueryClient<Conn>, ep: &str, query: &str) -> Option<Vec<String>> {
    match run_query(c, ep, query, true).await {
        Ok((series, None)) => {
            Some(series.iter().flat_map(|s| s.rows.iter().filter_map(|r| r.first().cloned())).collect())
        }
        _ => None,
    }
}

/// A statement that found nothing says so: "no data" in the table output, and on stderr the reason when it
/// is a measurement or field that does not exist (InfluxDB answers such a query with an empty result too).
async fn explain_empty(c: &mut QueryClient<Conn>, ep: &str, query: &str, all: &[Printed], format: Format) {
    use pharos_query::ast::{IdentKind, Source, Statement};
    let Ok(statements) = pharos_query::parse(query) else { return };
    let many = statements.len() > 1;
    for (i, st) in statements.iter().enumerate() {
        if all.iter().any(|p| p.statement as usize == i) {
            continue;
        }
        if matches!(format, Format::Table) {
            if many {
                println!("statement {i}: no data");
            } else {
                println!("no data");
            }
        }
        let Statement::Select(select) = st else { continue };
        let mut names = Vec::new();
        for f in &select.fields {
            projected_names(&f.expr, &mut names);
        }
        for source in &select.from {
            let Source::Name(m) = source else { continue };
            let quoted = format!("\"{}\"", m.replace('\\', "\\\\").replace('"', "\\\""));
            let Some(fields) = first_column(c, ep, &format!("SHOW FIELD KEYS FROM {quoted}")).await else { continue };
            if fields.is_empty() {
                eprintln!("hint: measurement {m:?} does not exist (SHOW MEASUREMENTS lists them)");
                continue;
            }
            let tags = first_column(c, ep, &format!("SHOW TAG KEYS FROM {quoted}")).await.unwrap_or_default();
            for (name, kind) in &names {
                let known = match kind {
                    IdentKind::Field => fields.contains(name),
                    IdentKind::Tag => tags.contains(name),
                    IdentKind::Any => fields.contains(name) || tags.contains(name),
                };
                match (known, kind) {
                    (true, _) => {}
                    (false, IdentKind::Tag) => {
                        eprintln!("hint: {m:?} has no tag {name:?}; its tags are {}", tags.join(", "))
                    }
                    (false, _) => eprintln!("hint: {m:?} has no field {name:?}; its fields are {}", fields.join(", ")),
                }
            }
        }
    }
}
