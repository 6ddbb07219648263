//! `pharos server`: runs a node. With no flags: a single-node cluster, data in ./pharos-data,
//! HTTP on 127.0.0.1:8086, gRPC on 127.0.0.1:8087.

use clap::{Parser, Subcommand};
use pharos_node::config::{Config, ServerFlags};

/// mimalloc instead of the system allocator: ingest allocates and frees many small strings and buffers
/// (see docs/benchmarks.md, ingest profile), where glibc's malloc spent a third of the CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "pharos", version, about = "Pharos: clustered metrics storage and alerting")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a Pharos node.
    Server(ServerFlags),
    /// Print the effective configuration (defaults, file and flags merged) as TOML.
    Config(ServerFlags),
    /// Restore this node's share of a backup (pharosctl backup) into a new data directory, before the
    /// node's first start: run it on every node of the new cluster with the flags it will start with.
    Restore {
        /// The backup directory (its manifest.json and files).
        dir: std::path::PathBuf,
        #[command(flatten)]
        flags: ServerFlags,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (flags, print_only, restore) = match cli.cmd {
        Cmd::Server(f) => (f, false, None),
        Cmd::Config(f) => (f, true, None),
        Cmd::Restore { dir, flags } => (flags, false, Some(dir)),
    };
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pharos: {e}");
            std::process::exit(2);
        }
    };
    if print_only {
        // Secrets (from the file, a secret file or the environment) are not printed.
        print!("{}", toml::to_string_pretty(&config.redacted())?);
        return Ok(());
    }
    if let Some(dir) = restore {
        let started = std::time::Instant::now();
        match pharos_node::backup::restore(&config, &dir, |line| eprintln!("pharos restore: {line}")) {
            Ok(r) => {
                println!(
                    "restored node {} of nodes {:?}: {} shards, {} bytes, in {:.1}s; start it with `pharos server` \
                     and the same flags",
                    r.node,
                    r.nodes,
                    r.shards.len(),
                    r.bytes,
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Err(e) => {
                eprintln!("pharos restore: {e}");
                std::process::exit(1);
            }
        }
    }
    pharos_node::logging::init(&flags, &config);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("pharos").build()?;
    if let Err(e) = rt.block_on(pharos_node::server::run(config, pharos_node::server::signal())) {
        eprintln!("pharos: {e}");
        std::process::exit(1);
    }
    Ok(())
}
