//! `pharosctl`: the admin CLI, over gRPC.

use std::io::Read;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pharos_proto::v1::admin_client::AdminClient;
use pharos_proto::v1::write_client::WriteClient;
use pharos_proto::v1::{StatusRequest, WriteRequest};

#[derive(Parser)]
#[command(name = "pharosctl", version, about = "Administer a Pharos cluster")]
struct Cli {
    /// gRPC address of any node.
    #[arg(long, global = true, env = "PHAROS_ADDR", default_value = "127.0.0.1:8087")]
    addr: String,
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
}

fn endpoint(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ep = endpoint(&cli.addr);
    match cli.cmd {
        Cmd::Status { json } => {
            let mut c = AdminClient::connect(ep.clone())
                .await
                .with_context(|| format!("cannot reach a Pharos node at {ep}; pass --addr host:grpcport"))?;
            let s = c.status(StatusRequest {}).await.context("status request failed")?.into_inner();
            if json {
                let v = serde_json::json!({
                    "node_id": s.node_id,
                    "nodes": s.nodes.iter().map(|n| serde_json::json!({"id": n.id, "grpc": n.grpc_addr, "http": n.http_addr, "reachable": n.reachable})).collect::<Vec<_>>(),
                    "shards": s.shards.iter().map(|sh| serde_json::json!({"shard": sh.shard, "replicas": sh.replicas, "leader": sh.leader, "term": sh.term, "applied": sh.applied_index, "last_log": sh.last_log_index, "lag": sh.lag})).collect::<Vec<_>>(),
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
        Cmd::Write { file, precision } => {
            let mut body = String::new();
            if file == "-" {
                std::io::stdin().read_to_string(&mut body).context("reading stdin")?;
            } else {
                body = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
            }
            let mut c = WriteClient::connect(ep.clone())
                .await
                .with_context(|| format!("cannot reach a Pharos node at {ep}; pass --addr host:grpcport"))?;
            let r = c
                .write(WriteRequest { points: Vec::new(), line_protocol: body, precision })
                .await
                .map_err(|s| anyhow::anyhow!("write refused: {}", s.message()))?
                .into_inner();
            println!("wrote {} points ({} samples)", r.points_written, r.samples_written);
        }
    }
    Ok(())
}
