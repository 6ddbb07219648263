//! Service discovery against real files, a real HTTP server and a real DNS server.

use std::time::Duration;

use pharos_scrape::labels::{self, from_pairs};
use pharos_scrape::{parse_config, DiscoveryOptions, JobConfig, JobDiscovery, TargetGroup};

use crate::common::dns::DnsServer;
use crate::common::{eventually, Reply, TestServer};

fn job(yaml: &str) -> JobConfig {
    parse_config(yaml).unwrap_or_else(|e| panic!("{e}")).scrape_configs.remove(0)
}

fn opts() -> DiscoveryOptions {
    DiscoveryOptions { file_poll_interval: Duration::from_millis(50), ..Default::default() }
}

fn targets(groups: &[TargetGroup]) -> Vec<String> {
    groups.iter().flat_map(|g| g.targets.iter().cloned()).collect()
}

/// Waits until the discovery's groups satisfy `ok`, returning them.
async fn wait_for(d: &JobDiscovery, what: &str, ok: impl Fn(&[TargetGroup]) -> bool) -> Vec<TargetGroup> {
    eventually(what, Duration::from_secs(10), || {
        let g = d.groups().filter(|g| ok(g));
        async move { g }
    })
    .await
}

#[tokio::test]
async fn static_groups_are_ready_at_once() {
    let j = job("scrape_configs:\n  - job_name: s\n    static_configs:\n      - targets: [a:1, b:2]\n        labels: {env: prod}\n      - targets: [c:3]\n");
    let mut d = JobDiscovery::start(&j, &opts());
    let g = d.ready().await.unwrap();
    assert_eq!(
        g,
        vec![
            TargetGroup {
                source: "static:0".into(),
                targets: vec!["a:1".into(), "b:2".into()],
                labels: from_pairs([("env", "prod")])
            },
            TargetGroup { source: "static:1".into(), targets: vec!["c:3".into()], labels: vec![] },
        ]
    );
    assert_eq!(d.changed().await, None, "static groups never change");
}

#[tokio::test]
async fn file_sd_follows_changes_and_keeps_the_last_good_groups() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    std::fs::write(&a, r#"[{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"env": "prod"}}]"#).unwrap();
    let pattern = dir.path().join("*.json").display().to_string();
    let yml_pattern = dir.path().join("*.yml").display().to_string();
    let j = job(&format!(
        "scrape_configs:\n  - job_name: f\n    file_sd_configs:\n      - files: ['{pattern}', '{yml_pattern}']\n        refresh_interval: 1h\n"
    ));
    let mut d = JobDiscovery::start(&j, &opts());
    let g = tokio::time::timeout(Duration::from_secs(10), d.ready()).await.unwrap().unwrap();
    let path = a.display().to_string();
    assert_eq!(
        g,
        vec![TargetGroup {
            source: format!("{path}:0"),
            targets: vec!["10.0.0.1:9100".into(), "10.0.0.2:9100".into()],
            labels: from_pairs([("__meta_filepath", path.as_str()), ("env", "prod")]),
        }]
    );

    // A change is seen within a few polls (mtime and size differ).
    std::fs::write(&a, r#"[{"targets": ["10.0.0.3:9100"]}, {"targets": ["10.0.0.4:9100"], "labels": {"rack": "r1"}}]"#)
        .unwrap();
    let g = wait_for(&d, "the rewritten file", |g| targets(g) == ["10.0.0.3:9100", "10.0.0.4:9100"]).await;
    assert_eq!(labels::get(&g[1].labels, "rack"), "r1");
    assert_eq!(g[1].source, format!("{path}:1"));

    // A broken file keeps its last good groups.
    std::fs::write(&a, "[{\"targets\": [\"10.0.0.5:9100\"").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(targets(&d.groups().unwrap()), ["10.0.0.3:9100", "10.0.0.4:9100"]);
    std::fs::write(&a, r#"[{"targets": ["10.0.0.1:9100"], "labels": {"bad-name": "x"}}]"#).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(targets(&d.groups().unwrap()), ["10.0.0.3:9100", "10.0.0.4:9100"], "invalid label names are errors");

    // Fixed again; and a YAML file matching the second pattern joins.
    std::fs::write(&a, r#"[{"targets": ["10.0.0.6:9100"]}]"#).unwrap();
    std::fs::write(dir.path().join("b.yml"), "- targets: ['10.0.1.1:9100']\n  labels:\n    team: db\n").unwrap();
    let g = wait_for(&d, "the fixed file and the new YAML file", |g| targets(g) == ["10.0.0.6:9100", "10.0.1.1:9100"])
        .await;
    assert_eq!(labels::get(&g[1].labels, "team"), "db");

    // A deleted file loses its groups.
    std::fs::remove_file(&a).unwrap();
    wait_for(&d, "the deleted file's groups to go", |g| targets(g) == ["10.0.1.1:9100"]).await;
}

#[tokio::test]
async fn file_sd_with_a_broken_first_read_reports_no_groups() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(&a, "- targets: [x:1]\n  lables: {}\n").unwrap();
    let j = job(&format!("scrape_configs:\n  - job_name: f\n    file_sd_configs: [{{files: ['{}']}}]\n", a.display()));
    let mut d = JobDiscovery::start(&j, &opts());
    let g = tokio::time::timeout(Duration::from_secs(10), d.ready()).await.unwrap().unwrap();
    assert_eq!(g, vec![], "unknown YAML fields are errors; the job is ready with no targets");
}

#[tokio::test]
async fn http_sd_refreshes_and_keeps_the_last_good_groups() {
    let server = TestServer::start().await;
    server.set(
        "/sd",
        Reply::json(r#"[{"targets": ["h1:9100", "h2:9100"], "labels": {"dc": "eu"}}, {"targets": ["h3:9100"]}]"#),
    );
    let url = server.url("/sd");
    let j = job(&format!(
        "scrape_configs:\n  - job_name: h\n    http_sd_configs: [{{url: '{url}', refresh_interval: 200ms}}]\n"
    ));
    let mut d = JobDiscovery::start(&j, &opts());
    let g = tokio::time::timeout(Duration::from_secs(10), d.ready()).await.unwrap().unwrap();
    assert_eq!(
        g,
        vec![
            TargetGroup {
                source: format!("{url}:0"),
                targets: vec!["h1:9100".into(), "h2:9100".into()],
                labels: from_pairs([("__meta_url", url.as_str()), ("dc", "eu")]),
            },
            TargetGroup {
                source: format!("{url}:1"),
                targets: vec!["h3:9100".into()],
                labels: from_pairs([("__meta_url", url.as_str())]),
            },
        ]
    );
    let hit = &server.hits("/sd")[0];
    assert_eq!(hit.headers["accept"], "application/json");
    assert_eq!(hit.headers["x-prometheus-refresh-interval-seconds"], "0.2");
    assert!(hit.headers["user-agent"].to_str().unwrap().starts_with("Pharos/"));

    server.set("/sd", Reply::json(r#"[{"targets": ["h4:9100"]}]"#));
    wait_for(&d, "the refreshed groups", |g| targets(g) == ["h4:9100"]).await;

    // Failures keep the last good groups.
    let before = server.hits("/sd").len();
    server.set("/sd", Reply::status(503));
    eventually("two failed refreshes", Duration::from_secs(10), || {
        let n = server.hits("/sd").len();
        async move { (n >= before + 2).then_some(()) }
    })
    .await;
    assert_eq!(targets(&d.groups().unwrap()), ["h4:9100"]);
    server.set("/sd", Reply::text("[]"));
    let before = server.hits("/sd").len();
    eventually("a refresh with the wrong content type", Duration::from_secs(10), || {
        let n = server.hits("/sd").len();
        async move { (n >= before + 2).then_some(()) }
    })
    .await;
    assert_eq!(targets(&d.groups().unwrap()), ["h4:9100"]);
    server.set("/sd", Reply::json("[]"));
    wait_for(&d, "an empty list", |g| g.is_empty()).await;
}

#[tokio::test]
async fn http_sd_failing_from_the_start_reports_no_groups() {
    let server = TestServer::start().await;
    let j = job(&format!(
        "scrape_configs:\n  - job_name: h\n    static_configs: [{{targets: ['s:1']}}]\n    http_sd_configs: [{{url: '{}'}}]\n",
        server.url("/missing")
    ));
    let mut d = JobDiscovery::start(&j, &opts());
    let g = tokio::time::timeout(Duration::from_secs(10), d.ready()).await.unwrap().unwrap();
    assert_eq!(targets(&g), ["s:1"], "the static targets are there; the failing source adds none");
}

#[tokio::test]
async fn dns_sd_a_aaaa_and_srv_against_a_real_server() {
    let dns = DnsServer::start().await;
    dns.set_a("web.test.", &["10.1.0.2", "10.1.0.1"]);
    dns.set_aaaa("web6.test.", &["fd00::1"]);
    dns.set_srv("_node._tcp.test.", &[("n2.test.", 9200), ("n1.test.", 9100)]);
    let o = DiscoveryOptions { dns_nameserver: Some(dns.addr), ..opts() };

    let a = job("scrape_configs:\n  - job_name: a\n    dns_sd_configs:\n      - {names: [web.test., web6.test.], type: A, port: 9100, refresh_interval: 200ms}\n");
    let mut d = JobDiscovery::start(&a, &o);
    let g = tokio::time::timeout(Duration::from_secs(10), d.ready()).await.unwrap().unwrap();
    assert_eq!(
        g,
        vec![
            TargetGroup {
                source: "web.test.".into(),
                targets: vec!["10.1.0.1:9100".into(), "10.1.0.2:9100".into()],
                labels: from_pairs([("__meta_dns_name", "web.test.")]),
            },
            TargetGroup {
                source: "web6.test.".into(),
                targets: vec![],
                labels: from_pairs([("__meta_dns_name", "web6.test.")]),
            },
        ],
        "web6 has no A records: no targets"
    );

    // Changes are picked up at the next refresh; a SERVFAIL keeps the last good targets; NXDOMAIN empties.
    dns.set_a("web.test.", &["10.1.0.3"]);
    wait_for(&d, "the new A record", |g| targets(g) == ["10.1.0.3:9100"]).await;
    dns.set_failing("web.test.", true);
    let before = dns.queries();
    eventually("failed lookups", Duration::from_secs(10), || {
        let n = dns.queries();
        async move { (n >= before + 4).then_some(()) }
    })
    .await;
    assert_eq!(targets(&d.groups().unwrap()), ["10.1.0.3:9100"]);
    dns.set_failing("web.test.", false);
    dns.remove("web.test.");
    wait_for(&d, "NXDOMAIN to empty the group", |g| targets(g).is_empty()).await;
    drop(d);

    let aaaa =
        job("scrape_configs:\n  - job_name: a6\n    dns_sd_configs: [{names: [web6.test.], type: AAAA, port: 9100}]\n");
    let g = JobDiscovery::start(&aaaa, &o).ready().await.unwrap();
    assert_eq!(targets(&g), ["[fd00::1]:9100"]);

    let srv = job("scrape_configs:\n  - job_name: srv\n    dns_sd_configs: [{names: [_node._tcp.test.]}]\n");
    let g = JobDiscovery::start(&srv, &o).ready().await.unwrap();
    assert_eq!(
        g,
        vec![
            TargetGroup {
                source: "_node._tcp.test.:0".into(),
                targets: vec!["n1.test:9100".into()],
                labels: from_pairs([
                    ("__meta_dns_name", "_node._tcp.test."),
                    ("__meta_dns_srv_record_port", "9100"),
                    ("__meta_dns_srv_record_target", "n1.test"),
                ]),
            },
            TargetGroup {
                source: "_node._tcp.test.:1".into(),
                targets: vec!["n2.test:9200".into()],
                labels: from_pairs([
                    ("__meta_dns_name", "_node._tcp.test."),
                    ("__meta_dns_srv_record_port", "9200"),
                    ("__meta_dns_srv_record_target", "n2.test"),
                ]),
            },
        ]
    );
}
