//! Alerting on a real `pharos` process: rule files validated and stored in the meta group, with
//! `pharosctl rules check|apply|list`. (Evaluation and notification are not built yet.)

use std::process::Command;

use anyhow::Result;
use cluster_tests::Cluster;

const GOOD: &str = r#"groups:
  - name: api
    interval: 15s
    rules:
      - alert: HighCpu
        expr: SELECT mean(usage_user) FROM cpu WHERE time > now() - 5m GROUP BY host HAVING mean(usage_user) > 90
        for: 5m
        labels:
          severity: page
        annotations:
          summary: "CPU of {{ $labels.host }} at {{ $value }}%"
      - record: cpu_busy_5m
        expr: SELECT mean(usage_user) FROM cpu WHERE time > now() - 5m GROUP BY host
"#;

// Line 6: a duration that is not one; line 9: a query that does not parse.
const BAD: &str = r#"groups:
  - name: api
    rules:
      - alert: A
        expr: SELECT last(value) FROM up GROUP BY instance HAVING last(value) = 0
        for: 5x
      - alert: B
        expr: >
          SELECT meen(x) FROM cpu
"#;

fn ctl(c: &Cluster, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(cluster_tests::pharos_bin().with_file_name("pharosctl"))
        .args(["--addr", &c.nodes[0].grpc])
        .args(args)
        .output()?;
    Ok((
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_rule_files_are_checked_applied_and_listed() -> Result<()> {
    let c = Cluster::start(1, "").await?;
    let dir = tempfile::TempDir::new()?;
    let (good, bad) = (dir.path().join("good.yml"), dir.path().join("bad.yml"));
    std::fs::write(&good, GOOD)?;
    std::fs::write(&bad, BAD)?;
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());

    let (ok, out) = ctl(&c, &["rules", "check", good])?;
    assert!(ok && out.contains("ok (1 groups, 2 rules)"), "{out}");
    let (ok, out) = ctl(&c, &["rules", "check", bad])?;
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("{bad}:6:")) && out.contains("5x"), "the bad duration, by line: {out}");
    assert!(out.contains("meen"), "the bad query: {out}");

    let (ok, out) = ctl(&c, &["rules", "list"])?;
    assert!(ok && out.contains("no rules applied yet"), "{out}");
    let (ok, out) = ctl(&c, &["rules", "apply", good])?;
    assert!(ok && out.contains("applied as version 1 (1 groups, 2 rules)"), "{out}");
    // A bad file is refused by the server too, naming the line, and changes nothing.
    let (ok, out) = ctl(&c, &["rules", "apply", bad])?;
    assert!(!ok && out.contains("6:"), "{out}");
    let (ok, out) = ctl(&c, &["rules", "list"])?;
    assert!(ok && out.contains("# version 1") && out.contains("alert: HighCpu"), "{out}");
    Ok(())
}
