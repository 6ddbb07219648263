//! Network partitions between real nodes, each in its own network namespace (cluster_tests::netlab: a cut
//! link drops packets both ways, nothing is refused). Needs root, as CI has.
//!
//! - A node cut off from the other two, leading some shards: the majority elects new leaders and goes on;
//!   the isolated node acknowledges no write while cut off; healed, it catches up; every acknowledged write
//!   is readable through every node.
//! - A flapping link (cut both ways or one way, and healed, every 2 s): nothing acknowledged is lost and the
//!   replicas converge.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use cluster_tests::load::{assert_all_readable, expected, Writer};
use cluster_tests::netlab::NetLab;
use cluster_tests::{recent_ms, wait_for, Cluster};

/// Acknowledged samples node `id` does not return as written (`stale`: from its own replicas).
async fn lacking(c: &Cluster, acked: &[(String, i64)], id: u64, stale: bool) -> Result<usize> {
    let want = expected(acked);
    let got = c.export(id, "load", stale).await?;
    Ok(want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).count())
}

/// Shards node `id` leads, from its own status.
async fn led_by(c: &Cluster, id: u64) -> Result<usize> {
    let st = c.status(id).await?;
    Ok(st.shards.iter().filter(|s| s.leader == id).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_leader_cut_off_from_the_majority_acknowledges_nothing_and_the_majority_goes_on() -> Result<()> {
    let lab = NetLab::new(3)?;
    let c = Cluster::start_in(&lab, 3, "").await?;
    let leads = led_by(&c, 1).await?;
    ensure!(leads > 0, "node 1 leads some shards");
    let w = Writer::start(&c, "part");
    w.only(&c, &[2, 3]);
    w.wait_more(20).await?;

    lab.isolate(1)?;
    let cut_at = Instant::now();
    println!("node 1 (leading {leads} shards) cut off");
    // The isolated node acknowledges nothing: it cannot reach a quorum for the shards it led, nor the
    // leaders of the others.
    let t0 = recent_ms();
    let body: String = (0..128).map(|h| format!("isolated,host=h{h} v=1 {}\n", t0)).collect();
    let r = c.http.post(c.nodes[0].url("/write?precision=ms")).body(body).send().await?;
    ensure!(r.status() != 204, "the isolated node acknowledged a write");
    println!("a write through the isolated node: {} after {:?}", r.status(), cut_at.elapsed());
    // The majority goes on.
    w.wait_more(50).await?;
    let gap = w.longest_gap();
    println!("longest gap between acknowledged writes through nodes 2 and 3: {gap:?}");
    ensure!(gap < Duration::from_secs(15), "the majority took {gap:?} to go on");
    ensure!(led_by(&c, 2).await? + led_by(&c, 3).await? >= 16, "the majority leads every shard");

    lab.rejoin(1)?;
    println!("healed after {:?}", cut_at.elapsed());
    w.wait_more(20).await?;
    let acked = w.finish().await;
    // Node 1 catches up: every acknowledged write readable through each node, node 1's own reads stale.
    wait_for(Duration::from_secs(60), "node 1's replicas to catch up", || async {
        Ok((lacking(&c, &acked, 1, true).await? == 0).then_some(()))
    })
    .await?;
    assert_all_readable(&c, &acked, &[1, 2, 3]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_a_flapping_and_one_way_link_loses_nothing_and_the_replicas_converge() -> Result<()> {
    let lab = NetLab::new(3)?;
    let c = Cluster::start_in(&lab, 3, "").await?;
    let w = Writer::start(&c, "flap");
    w.wait_more(10).await?;
    // 20 s of the link between nodes 1 and 3 cut both ways, healed, cut one way (1 -> 3), healed, ...
    for round in 0..10 {
        match round % 4 {
            0 => lab.cut(1, 3)?,
            1 => lab.heal(1, 3)?,
            2 => lab.cut_from(1, 3)?,
            _ => lab.heal_from(1, 3)?,
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Round 9 healed it.
    w.wait_more(10).await?;
    let acked = w.finish().await;
    println!("{} batches acknowledged across the flapping link", acked.len());
    for id in [1, 2, 3] {
        wait_for(Duration::from_secs(60), "every replica to converge", || async {
            Ok((lacking(&c, &acked, id, true).await? == 0).then_some(()))
        })
        .await?;
    }
    assert_all_readable(&c, &acked, &[1, 2, 3]).await?;
    Ok(())
}
