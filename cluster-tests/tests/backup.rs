//! Backup and restore of a whole cluster: `pharosctl backup` of a 3-node cluster under writes, the cluster
//! destroyed, `pharos restore` into a fresh 3-node cluster, an incremental backup of that one, and a restore
//! of it into a fresh 1-node cluster; every write acknowledged before a backup began is there, nothing that
//! was never written is, the configuration came along, and the restored clusters take writes. A damaged
//! backup is refused, naming the piece and the shard.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use cluster_tests::load::{assert_all_readable, expected, Writer};
use cluster_tests::{wait_for, Cluster};

const RULES: &str = r#"groups:
  - name: backed-up
    interval: 15s
    rules:
      - alert: LoadHigh
        expr: SELECT last(v) FROM load WHERE time > now() - 5m GROUP BY host HAVING last(v) > 1000000
        for: 1m
"#;

/// What the restored cluster holds of the load: every point acknowledged before the backup, and only
/// points that were sent.
async fn check_restored(
    c: &Cluster,
    before: &[(String, i64)],
    all: &[(String, i64)],
    sent: i64,
    later: bool,
) -> Result<()> {
    let ids: Vec<u64> = c.nodes.iter().map(|n| n.id).collect();
    assert_all_readable(c, before, &ids).await?;
    let got = c.export(ids[0], "load", false).await?;
    let acked_all = expected(all);
    let before_keys = expected(before);
    // Points acknowledged after the backup began may or may not be in it; any other point must be one a
    // request carried (sent but unanswered ones included), with its value.
    for (k, v) in &got {
        if acked_all.contains_key(k) {
            assert_eq!(acked_all.get(k), Some(v), "{k:?}");
        } else {
            let i = *v as i64;
            ensure!(
                (0..=sent).contains(&i) && k.1 == cluster_tests::recent_ms() + i * 1000,
                "the restored cluster holds a point never written: {k:?} = {v}"
            );
        }
    }
    ensure!(
        got.len() >= before_keys.len(),
        "restored {} points, {} were acknowledged before",
        got.len(),
        before_keys.len()
    );
    // The configuration came along.
    let rules = c.pharosctl(ids[0], &["rules", "list"])?;
    ensure!(rules.contains("LoadHigh"), "rules after restore: {rules}");
    // Every shard elected a leader and the cluster takes writes.
    let st = c.status(ids[0]).await?;
    ensure!(st.nodes.len() == ids.len(), "nodes after restore: {:?}", st.nodes);
    // The point written after the first restore is in the second backup.
    let got = c.export(ids[0], "after_restore", false).await?;
    ensure!(got.len() == usize::from(later), "after_restore before writing: {got:?}");
    let body = format!("after_restore,host=a v=1 {}\n", cluster_tests::recent_ms());
    let (code, text) = c.write(ids[ids.len() - 1], body).await?;
    ensure!(code == 204, "a write after restore: {code} {text}");
    ensure!(c.export(ids[0], "after_restore", false).await?.len() == 1);
    Ok(())
}

/// `pharosctl backup` through node `via` (blocking: on a blocking thread); its output.
async fn backup(c: &Cluster, via: u64, dir: &Path, more: &[&str]) -> Result<String> {
    let addr = c.nodes.iter().find(|n| n.id == via).unwrap().grpc.clone();
    let mut args: Vec<String> = vec!["--addr".into(), addr, "backup".into(), dir.to_str().unwrap().into()];
    args.extend(more.iter().map(|s| s.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(cluster_tests::pharos_bin().with_file_name("pharosctl")).args(&args).output()
    })
    .await??;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "pharosctl backup: {text}");
    Ok(text)
}

/// Pieces of a backup, and how many of them are hard links (shared with another backup).
fn pieces(dir: &Path) -> Result<(usize, usize)> {
    use std::os::unix::fs::MetadataExt;
    let (mut n, mut linked) = (0, 0);
    for sub in std::fs::read_dir(dir.join("pieces"))? {
        for f in std::fs::read_dir(sub?.path())? {
            n += 1;
            linked += usize::from(f?.metadata()?.nlink() > 1);
        }
    }
    Ok((n, linked))
}

fn run_pharos(args: &[&str], backup: &Path) -> Result<(bool, String)> {
    let out = std::process::Command::new(cluster_tests::pharos_bin()).args(args).arg(backup).output()?;
    Ok((
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_backup_under_writes_restores_into_three_and_one_nodes() -> Result<()> {
    let work = tempfile::TempDir::new()?;
    let backup_dir = work.path().join("backup");
    let (before, all, sent) = {
        let c = Cluster::start(3, "").await?;
        let rules = work.path().join("rules.yml");
        std::fs::write(&rules, RULES)?;
        c.pharosctl(1, &["rules", "apply", rules.to_str().unwrap()])?;
        let w = Writer::start(&c, "bk");
        w.wait_more(40).await?;
        // Everything acknowledged from here on may or may not be in the backup; everything before must be.
        let before = w.acked.lock().unwrap().clone();
        // Small pieces, so this small data set is cut into many and the incremental backup below can share them.
        let text = backup(&c, 2, &backup_dir, &["--piece-kib", "1"]).await?;
        ensure!(text.contains("17/17") && text.contains("backup of 16 shards"), "progress and summary: {text}");
        w.wait_more(20).await?;
        let sent = w.started.load(std::sync::atomic::Ordering::SeqCst);
        let all = w.finish().await;
        ensure!(all.len() > before.len() + 20);
        // A piece that went bad on disk in a backup is not carried into an incremental one built on it: the
        // first piece of every shard in backup A is damaged, then B is taken from A with nothing written in
        // between, so B needs those same pieces and must write them afresh.
        let (a, b) = (work.path().join("a"), work.path().join("b"));
        backup(&c, 1, &a, &["--piece-kib", "1"]).await?;
        let ma: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("manifest.json"))?)?;
        let firsts: Vec<String> = (0..16).map(|s| ma["parts"][s]["pieces"][0].as_str().unwrap().to_string()).collect();
        for p in &firsts {
            let path = a.join("pieces").join(&p[..2]).join(p);
            let mut bytes = std::fs::read(&path)?;
            bytes[0] ^= 0x01;
            std::fs::write(&path, bytes)?;
        }
        backup(&c, 1, &b, &["--piece-kib", "1", "--incremental-from", a.to_str().unwrap()]).await?;
        let mb = std::fs::read_to_string(b.join("manifest.json"))?;
        let reused: Vec<&String> = firsts.iter().filter(|p| mb.contains(p.as_str())).collect();
        ensure!(!reused.is_empty(), "B shares none of A's first pieces");
        for p in reused {
            let sum = std::process::Command::new("sha256sum").arg(b.join("pieces").join(&p[..2]).join(p)).output()?;
            let sum = String::from_utf8_lossy(&sum.stdout).split(' ').next().unwrap_or("").to_string();
            ensure!(&sum == p, "the incremental backup carried the damaged piece {p} along");
        }
        // A second backup into the same directory is refused (a backup is never overwritten).
        let again = c.pharosctl(2, &["backup", backup_dir.to_str().unwrap()]);
        ensure!(again.is_err_and(|e| e.to_string().contains("already holds a backup")));
        // The old cluster is destroyed: processes killed, data directories deleted with `c`.
        drop(c);
        (before, all, sent)
    };
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json"))?)?;
    ensure!(manifest["parts"].as_array().map(|p| p.len()) == Some(16), "{manifest}");
    println!("{} batches acknowledged before the backup, {} in all", before.len(), all.len());

    // Into a fresh 3-node cluster (new ports, new data directories); an incremental backup of that one;
    // restored into a 1-node cluster.
    let second = work.path().join("second");
    for (n, from, later) in [(3usize, &backup_dir, false), (1, &second, true)] {
        let c = Cluster::restored(n, "", from).await?;
        wait_for(Duration::from_secs(30), "every shard to elect a leader", || async {
            let st = c.status(1).await?;
            Ok((st.shards.len() == 16 && st.shards.iter().all(|s| s.leader != 0)).then_some(()))
        })
        .await?;
        check_restored(&c, &before, &all, sent, later)
            .await
            .map_err(|e| e.context(format!("restored into {n} nodes")))?;
        // Restoring over a data directory that holds data is refused.
        let data = c.nodes[0].dir.path().join("data");
        let (ok, text) = run_pharos(&["restore", "--data-dir", data.to_str().unwrap()], from)?;
        ensure!(!ok && text.contains("already holds a node's data"), "{text}");
        if n == 3 {
            let prev = backup_dir.to_str().unwrap();
            let text = backup(&c, 3, &second, &["--piece-kib", "1", "--incremental-from", prev]).await?;
            let (total, linked) = pieces(&second)?;
            println!("incremental backup: {linked} of {total} pieces shared with the first\n{text}");
            ensure!(linked > 0 && linked < total, "{linked} of {total} pieces linked: {text}");
        }
    }

    // A damaged backup: one byte of one shard's file flipped, or the manifest missing.
    let damaged = work.path().join("damaged");
    let cp = std::process::Command::new("cp").arg("-a").arg(&backup_dir).arg(&damaged).status()?;
    ensure!(cp.success());
    let first = manifest["parts"][3]["pieces"][0].as_str().unwrap().to_string();
    let victim = damaged.join("pieces").join(&first[..2]).join(&first);
    let mut bytes = std::fs::read(&victim)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&victim, bytes)?;
    let fresh = work.path().join("fresh");
    let (ok, text) = run_pharos(&["restore", "--data-dir", fresh.to_str().unwrap()], &damaged)?;
    ensure!(!ok && text.contains(&format!("{first} (a piece of shard 3) is corrupt")), "{text}");
    ensure!(!fresh.join("db").exists(), "a refused restore wrote data");
    // A restore cut short leaves `db.restoring`: the server refuses the directory, a new restore starts over.
    let cut = work.path().join("cut");
    std::fs::create_dir_all(cut.join("db.restoring"))?;
    std::fs::write(cut.join("db.restoring").join("CURRENT"), "half")?;
    let port = |_| cluster_tests::free_port();
    let addrs = [format!("127.0.0.1:{}", port(0)), format!("127.0.0.1:{}", port(1))];
    let out = std::process::Command::new(cluster_tests::pharos_bin())
        .args(["server", "--data-dir", cut.to_str().unwrap(), "--http-addr", &addrs[0], "--grpc-addr", &addrs[1]])
        .output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(!out.status.success() && text.contains("a restore that did not finish"), "{text}");
    let (ok, text) = run_pharos(&["restore", "--data-dir", cut.to_str().unwrap()], &backup_dir)?;
    ensure!(ok && text.contains("left by an earlier restore"), "{text}");
    ensure!(cut.join("db").exists() && !cut.join("db.restoring").exists());
    std::fs::remove_file(damaged.join("manifest.json"))?;
    let (ok, text) = run_pharos(&["restore", "--data-dir", fresh.to_str().unwrap()], &damaged)?;
    ensure!(!ok && text.contains("manifest.json is missing"), "{text}");
    Ok(())
}
