//! A disk that fills up, for real: the node's data directory is moved onto a small tmpfs (this needs root,
//! as CI has), the free space is taken by a filler file, and given back by deleting it.
//!
//! - With the free-space floor (`storage.min_free_bytes`), writes are refused up front with HTTP 507 naming
//!   the floor, and resume by themselves when space returns.
//! - Without it (floor 0), RocksDB itself runs out of space: writes fail, nothing acknowledged is lost, the
//!   node does not exit, and the Raft groups that stopped on the storage error are reopened once there is
//!   room again, so every shard takes writes again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cluster_tests::{recent_ms, wait_for, Cluster};

/// A tmpfs mounted over a node's data directory (its contents copied in), unmounted when dropped.
struct SmallDisk {
    mount: PathBuf,
}

impl SmallDisk {
    /// Moves the (stopped) node's data directory onto a tmpfs of `megabytes`.
    fn under(data: &Path, megabytes: u64) -> Result<SmallDisk> {
        let aside = data.with_extension("before-tmpfs");
        std::fs::rename(data, &aside)?;
        std::fs::create_dir(data)?;
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(data)
            .status()
            .context("running mount")?;
        ensure!(st.success(), "mounting a tmpfs needs root (this test makes a small disk to fill)");
        let st = Command::new("cp").arg("-a").arg(format!("{}/.", aside.display())).arg(data).status()?;
        ensure!(st.success(), "copying the data directory onto the tmpfs");
        Ok(SmallDisk { mount: data.to_path_buf() })
    }

    fn free(&self) -> Result<u64> {
        let out = Command::new("df").args(["--output=avail", "-B1"]).arg(&self.mount).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).context("df output")?.trim().parse().context("df's free bytes")
    }

    /// Takes all but `leave` bytes of the free space with a file.
    fn fill_leaving(&self, leave: u64) -> Result<PathBuf> {
        let filler = self.mount.join("filler");
        let size = self.free()?.saturating_sub(leave);
        let st = Command::new("fallocate").args(["-l", &size.to_string()]).arg(&filler).status()?;
        ensure!(st.success(), "fallocate on the tmpfs");
        Ok(filler)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Restarts the single node of `c` with its data directory on a small disk.
async fn on_small_disk(c: &mut Cluster, megabytes: u64) -> Result<SmallDisk> {
    let data = c.nodes[0].dir.path().join("data");
    c.nodes[0].terminate(Duration::from_secs(30))?;
    let disk = SmallDisk::under(&data, megabytes)?;
    c.nodes[0].start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    Ok(disk)
}

/// Lines of `hosts` series (they spread over every shard), one sample each at `t`.
fn batch(round: i64, hosts: i64, t: i64) -> String {
    (0..hosts).map(|h| format!("diskfill,host=h{h} v={round},w={} {t}\n", round * 7 + h)).collect()
}

/// Samples the node holds of the measurement `diskfill` for each acknowledged round.
async fn count(c: &Cluster) -> Result<u64> {
    let q = [("q", "SELECT count(v) FROM diskfill"), ("db", "pharos")];
    let r: serde_json::Value = c.http.get(c.nodes[0].url("/query")).query(&q).send().await?.json().await?;
    Ok(r["results"][0]["series"][0]["values"][0][1].as_u64().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_full_disk_refuses_writes_with_507_and_they_resume_when_space_returns() -> Result<()> {
    let mut c = Cluster::start(1, "[storage]\nmin_free_bytes = 33554432\n").await?;
    let disk = on_small_disk(&mut c, 160).await?;
    let write = c.nodes[0].url("/write?precision=ms");
    let t0 = recent_ms();
    let mut acked = 0u64;
    for round in 0..5 {
        let r = c.http.post(&write).body(batch(round, 200, t0 + round * 1000)).send().await?;
        ensure!(r.status() == 204, "{}", r.text().await?);
        acked += 200;
    }
    // Leave 16 MB, under the 32 MB floor: writes are refused up front, with what to do.
    let filler = disk.fill_leaving(16 << 20)?;
    let refused = wait_for(Duration::from_secs(5), "a write refused with 507", || async {
        let r = c.http.post(&write).body(batch(99, 200, t0 + 99_000)).send().await?;
        Ok((r.status() == 507).then_some(r))
    })
    .await?;
    let text = refused.text().await?;
    ensure!(text.contains("disk is full") && text.contains("storage.min_free_bytes"), "{text}");
    let health: serde_json::Value = c.http.get(c.nodes[0].url("/health")).send().await?.json().await?;
    ensure!(health["status"] == "pass" && health["disk"]["writes_refused"] == true, "{health}");
    let metrics = c.http.get(c.nodes[0].url("/metrics")).send().await?.text().await?;
    ensure!(metrics.lines().any(|l| l.starts_with("pharos_disk_full") && l.ends_with(" 1")), "{metrics}");
    // Reads go on.
    ensure!(count(&c).await? >= acked, "reads while the disk is full");

    // Space returns: writes resume by themselves.
    std::fs::remove_file(filler)?;
    let started = Instant::now();
    wait_for(Duration::from_secs(10), "writes to resume", || async {
        let r = c.http.post(&write).body(batch(5, 200, t0 + 5_000)).send().await?;
        Ok((r.status() == 204).then_some(()))
    })
    .await?;
    acked += 200;
    println!("writes resumed {:?} after space returned", started.elapsed());
    let held = count(&c).await?;
    ensure!(held >= acked, "every acknowledged sample is there: {held} of {acked}");
    drop(c);
    drop(disk);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_out_of_space_inside_rocksdb_loses_nothing_and_the_stopped_groups_reopen() -> Result<()> {
    // No floor: RocksDB itself hits ENOSPC.
    let mut c = Cluster::start(1, "[storage]\nmin_free_bytes = 0\n").await?;
    let disk = on_small_disk(&mut c, 96).await?;
    let write = c.nodes[0].url("/write?precision=ms");
    let t0 = recent_ms();
    let filler = disk.fill_leaving(3 << 20)?;
    let (mut acked, mut failures, mut round) = (0u64, 0u32, 0i64);
    let deadline = Instant::now() + Duration::from_secs(90);
    while failures < 20 {
        if Instant::now() > deadline {
            bail!("the disk never filled: {acked} samples acknowledged");
        }
        round += 1;
        let Ok(r) = c.http.post(&write).body(batch(round, 500, t0 + round)).send().await else {
            // The process ended: Debian's librocksdb asserts on a write after ENOSPC and aborts, or the meta
            // group stopped and the node exited to be restarted.
            let until = Instant::now() + Duration::from_secs(5);
            while c.nodes[0].running() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ensure!(!c.nodes[0].running(), "a request failed while the node runs");
            break;
        };
        match r.status().as_u16() {
            204 => acked += 500,
            s if s >= 500 => failures += 1,
            s => bail!("unexpected status {s}: {}", r.text().await?),
        }
    }
    let survived = c.nodes[0].running();
    if !survived {
        let log = c.nodes[0].log();
        let why: Vec<&str> = log.lines().filter(|l| l.contains("exiting") || l.contains("Assertion")).collect();
        println!("the node ended: {}", why.join(" | "));
    }
    println!(
        "{acked} samples acknowledged before the disk filled; the process {}",
        if survived { "survived" } else { "ended" }
    );

    std::fs::remove_file(filler)?;
    if !survived {
        // What a service manager does.
        c.nodes[0].start()?;
        c.wait_healthy(Duration::from_secs(60)).await?;
    }
    // Every shard takes writes again (500 hosts land on all 16), within the reconciler's round.
    let started = Instant::now();
    wait_for(Duration::from_secs(60), "every shard to take writes again", || async {
        let r = c.http.post(&write).body(batch(round, 500, t0 + round)).send().await?;
        Ok((r.status() == 204).then_some(()))
    })
    .await?;
    acked += 500;
    println!("all shards took writes {:?} after space returned", started.elapsed());
    let log = c.nodes[0].log();
    if survived {
        // The process lived through it: the groups RocksDB's errors stopped were closed and opened again.
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("replica") && !l.contains("ERROR")).collect();
        ensure!(
            log.contains("stopped on an error; reopening") && log.contains("replica reopened"),
            "stopped groups were reopened:\n{}",
            lines.join("\n")
        );
    }
    let held = count(&c).await?;
    ensure!(held >= acked, "every acknowledged sample is there: {held} of {acked}");
    // And after a crash.
    c.nodes[0].kill();
    c.nodes[0].start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    let held = count(&c).await?;
    ensure!(held >= acked, "every acknowledged sample is there after SIGKILL: {held} of {acked}");
    drop(c);
    drop(disk);
    Ok(())
}
