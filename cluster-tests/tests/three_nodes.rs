//! Three real `pharos` processes on loopback: failures by SIGKILL and SIGSTOP must lose no acknowledged point.

use std::time::{Duration, Instant};

use anyhow::Result;
use cluster_tests::load::{assert_all_readable, expected, Writer};
use cluster_tests::{wait_for, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_sigkill_a_node_under_writes_then_restart_loses_nothing() -> Result<()> {
    let mut c = Cluster::start(3, "").await?;
    // A healthy start logs none of openraft's expected election races (there were dozens per node).
    for n in &c.nodes {
        let log = n.log();
        assert!(!log.contains("because vote changed"), "node {}:\n{}", n.id, cluster_tests::tail(&log, 20));
    }
    let w = Writer::start(&c, "k");
    w.wait_more(20).await?;
    c.node(3).kill();
    w.only(&c, &[1, 2]);
    w.wait_more(30).await?;
    c.node(3).start()?;
    w.only(&c, &[1, 2, 3]);
    c.wait_healthy(Duration::from_secs(60)).await?;
    w.wait_more(20).await?;
    let acked = w.finish().await;
    assert_all_readable(&c, &acked, &[1, 2, 3]).await?;
    // The restarted node's own replicas caught up: a stale (local) read there sees everything too.
    let want = expected(&acked);
    wait_for(Duration::from_secs(30), "node 3 replicas to catch up", || async {
        let got = c.export(3, "load", true).await?;
        Ok(want.keys().all(|k| got.contains_key(k)).then_some(()))
    })
    .await?;
    // Status after the restart, through every node: each node reachable with its HTTP address, each shard as
    // its leader reports it, with the lag of every follower (the restarted node's included).
    for asked in [1, 2, 3] {
        wait_for(Duration::from_secs(20), "a complete status", || async {
            let st = c.status(asked).await?;
            for n in &st.nodes {
                let proc = c.nodes.iter().find(|p| p.id == n.id).expect("known node");
                if !n.reachable || n.http_addr != proc.http {
                    anyhow::bail!("asked {asked}: node {} reachable {} http {:?}", n.id, n.reachable, n.http_addr);
                }
            }
            for sh in &st.shards {
                let followers = sh.replicas.iter().filter(|r| **r != sh.leader).count();
                if sh.leader == 0 || sh.reporter != sh.leader || sh.lag.len() < followers {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })
        .await?;
    }
    // The survivors said once that node 3 stopped answering and that it came back, instead of logging every
    // failed replication retry of every group (some 200 lines a node for a 10-second outage before).
    for id in [1, 2] {
        // Each survivor notices the return at its next liveness ping (every second), maybe after the status
        // above already shows node 3.
        let said_both = |log: &str| log.contains("node stopped answering") && log.contains("node answers again");
        let logged = wait_for(Duration::from_secs(10), "the survivor to log node 3's return", || async {
            Ok(said_both(&c.nodes.iter().find(|n| n.id == id).expect("node").log()).then_some(()))
        })
        .await;
        let log = c.nodes.iter().find(|n| n.id == id).expect("node").log();
        assert!(logged.is_ok(), "node {id}:\n{log}");
        assert!(!log.contains("Unreachable node"), "node {id}:\n{}", cluster_tests::tail(&log, 30));
        assert!(log.lines().count() < 40, "node {id} logged {} lines:\n{log}", log.lines().count());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_sigkill_a_shard_leader_mid_write_recovers_within_5s() -> Result<()> {
    let mut c = Cluster::start(3, "").await?;
    let w = Writer::start(&c, "l");
    w.wait_more(10).await?;
    let status = c.status(1).await?;
    let victim = status.shards[0].leader;
    assert_ne!(victim, 0, "shard 0 has a leader");
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != victim).collect();
    w.only(&c, &survivors);
    let killed_at = Instant::now();
    c.node(victim).kill();
    // Every batch touches every shard, so the first acknowledged batch sent after the kill means shard 0
    // (and every shard the victim led) accepts writes again; one already under way may have been committed
    // before the kill.
    let sent_before = w.started.load(std::sync::atomic::Ordering::SeqCst);
    wait_for(Duration::from_secs(30), "a write sent after the kill", || async {
        Ok(w.acked.lock().unwrap().iter().any(|(_, i)| *i > sent_before).then_some(()))
    })
    .await?;
    let took = killed_at.elapsed();
    println!("shard 0 accepted writes again {:.2} s after its leader (node {victim}) was killed", took.as_secs_f64());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let acked = w.finish().await;
    assert_all_readable(&c, &acked, &survivors).await?;
    let new = c.status(survivors[0]).await?.shards[0].leader;
    assert!(new != 0 && new != victim, "a surviving node leads shard 0 (got {new})");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_sigstop_a_node_for_10s_no_split_brain_nothing_lost() -> Result<()> {
    let c = Cluster::start(3, "").await?;
    let w = Writer::start(&c, "s");
    w.wait_more(10).await?;
    // The writer sends one request at a time: once two more were acknowledged, none is in flight to node 3
    // (a request sent to a frozen node waits for it, as any client's would).
    w.only(&c, &[1, 2]);
    w.wait_more(2).await?;
    c.nodes[2].signal("STOP")?;
    let frozen = Instant::now();
    w.wait_more(20).await?;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(frozen.elapsed())).await;
    c.nodes[2].signal("CONT")?;
    w.only(&c, &[1, 2, 3]);
    c.wait_healthy(Duration::from_secs(60)).await?;
    w.wait_more(20).await?;
    let gap = w.longest_gap();
    let acked = w.finish().await;
    println!("longest gap between acknowledged writes with a node frozen: {:.2} s", gap.as_secs_f64());
    // A frozen leader costs what a dead one does (an election): writes it was forwarded are resent to the
    // new leader, not held until it wakes.
    assert!(gap < Duration::from_secs(5), "writes stalled {gap:?} while a node was frozen for 10 s");
    assert_all_readable(&c, &acked, &[1, 2, 3]).await?;
    // No split brain: for every shard, every node names the same leader once things settle.
    wait_for(Duration::from_secs(20), "all nodes to agree on every shard's leader", || async {
        let views = [c.status(1).await?, c.status(2).await?, c.status(3).await?];
        let agree = (0..views[0].shards.len()).all(|s| {
            let l = views[0].shards[s].leader;
            l != 0 && views.iter().all(|v| v.shards[s].leader == l)
        });
        Ok(agree.then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_node_back_after_many_writes_catches_up_by_snapshot() -> Result<()> {
    // Tiny snapshot thresholds so the leaders purge the log the follower missed and must send snapshots.
    let mut c = Cluster::start(3, "[raft]\nsnapshot_after_entries = 20\nkeep_entries_after_snapshot = 2\n").await?;
    let w = Writer::start(&c, "c");
    w.wait_more(5).await?;
    c.node(3).kill();
    w.only(&c, &[1, 2]);
    w.wait_more(150).await?;
    let acked = w.finish().await;
    c.node(3).start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    // Nothing acknowledged is missing. (A request that failed may have been durable on some shards: the
    // leaders can hold more than was acknowledged, never less.)
    assert_all_readable(&c, &acked, &[1]).await?;
    let want = c.export(1, "load", false).await?;
    wait_for(Duration::from_secs(60), "node 3 to catch up", || async {
        let got = c.export(3, "load", true).await?;
        Ok((got == want).then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}: node 3 never held the leaders' {} samples", want.len()))?;
    Ok(())
}
