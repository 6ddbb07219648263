//! docker/compose.yml, checked without Docker (CI has none): the file parses, every node has a volume and a
//! health check, and the exact commands it gives the nodes start a working cluster when run as processes,
//! each node on its own loopback address in place of its container's hostname; the fourth node it adds
//! with `--profile grow` joins, and `pharosctl rebalance` spreads the replicas over four nodes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use cluster_tests::{pharos_bin, wait_for};

/// The node's loopback address in place of `pharosN`.
fn host(n: usize) -> String {
    format!("127.0.0.{}", 40 + n)
}

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn command(service: &serde_yaml::Value, n: usize, data: &Path) -> Result<Vec<String>> {
    let args = service["command"].as_sequence().context("a command list")?;
    Ok(args
        .iter()
        .map(|a| {
            let mut a = a.as_str().expect("string").to_string();
            a = a.replace("0.0.0.0", &host(n)).replace("/var/lib/pharos", &data.display().to_string());
            for m in 1..=4 {
                a = a.replace(&format!("pharos{m}:"), &format!("{}:", host(m)));
            }
            a
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_the_compose_files_commands_start_a_cluster_and_grow_it() -> Result<()> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/compose.yml"))?;
    let mut compose: serde_yaml::Value = serde_yaml::from_str(&text)?;
    compose.apply_merge()?;
    let services = &compose["services"];
    for n in 1..=4 {
        let s = &services[format!("pharos{n}").as_str()];
        assert!(s["healthcheck"]["test"].is_sequence(), "pharos{n} has a health check");
        assert_eq!(s["volumes"][0].as_str(), Some(format!("pharos{n}:/var/lib/pharos").as_str()));
        assert!(compose["volumes"][format!("pharos{n}").as_str()].is_null(), "volume pharos{n} declared");
    }
    assert_eq!(services["pharos4"]["profiles"][0].as_str(), Some("grow"));
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::TempDir::new()).collect::<Result<_, _>>()?;
    let mut procs = Procs(Vec::new());
    let start = |n: usize| -> Result<Child> {
        let args = command(&services[format!("pharos{n}").as_str()], n, dirs[n - 1].path())?;
        let log = std::fs::File::create(dirs[n - 1].path().join("log"))?;
        Ok(Command::new(pharos_bin()).args(&args).stdout(Stdio::from(log.try_clone()?)).stderr(log).spawn()?)
    };
    for n in 1..=3 {
        procs.0.push(start(n)?);
    }
    let http = reqwest::Client::new();
    let healthy = |n: usize| {
        let http = http.clone();
        async move {
            let r = http.get(format!("http://{}:8086/health", host(n))).send().await;
            Ok(matches!(r, Ok(r) if r.status() == 200).then_some(()))
        }
    };
    for n in 1..=3 {
        wait_for(Duration::from_secs(60), "a compose node healthy", || healthy(n)).await?;
    }
    let line = format!("cpu,host=a usage=1 {}\n", cluster_tests::recent_ms());
    let r = http.post(format!("http://{}:8086/write?precision=ms", host(2))).body(line).send().await?;
    assert_eq!(r.status(), 204);

    procs.0.push(start(4)?);
    wait_for(Duration::from_secs(60), "the fourth node healthy", || healthy(4)).await?;
    let ctl = |args: &[&str]| -> Result<String> {
        let out = Command::new(pharos_bin().with_file_name("pharosctl"))
            .arg("--addr")
            .arg(format!("{}:8087", host(1)))
            .args(args)
            .output()?;
        anyhow::ensure!(out.status.success(), "pharosctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    };
    wait_for(Duration::from_secs(60), "node 4 a member", || async {
        Ok(ctl(&["node", "list"])?.lines().any(|l| l.starts_with("4 ") && !l.trim_end().ends_with('-')).then_some(()))
    })
    .await?;
    let out = ctl(&["rebalance"])?;
    assert!(out.contains("finished"), "{out}");
    let list = ctl(&["node", "list", "--json"])?;
    let replicas: Vec<u64> = list
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).map(|v| v["replicas"].as_u64().unwrap_or(0)))
        .collect::<Result<_, _>>()?;
    assert_eq!(replicas, vec![12, 12, 12, 12], "{list}");
    // The point written before the fourth node joined reads through it.
    let q = http
        .get(format!("http://{}:8086/query", host(4)))
        .query(&[("q", "SELECT count(usage) FROM cpu")])
        .send()
        .await?
        .text()
        .await?;
    assert!(q.contains("[\"1970-01-01T00:00:00Z\",1]"), "{q}");
    Ok(())
}
