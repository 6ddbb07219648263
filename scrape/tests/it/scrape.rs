//! One scrape against a real HTTP server.

use std::time::Duration;

use pharos_scrape::labels::{self, from_pairs};
use pharos_scrape::scrape::{default_client, ACCEPT_HEADER};
use pharos_scrape::{
    parse_config, scrape, targets_from_group, Health, JobConfig, Sample, ScrapeOutcome, Target, TargetGroup,
};

use crate::common::{Reply, TestServer};

const NOW: i64 = 1_700_000_000_000;

/// The job `yaml` (one scrape config without targets) and its target for `server`.
fn setup(server: &TestServer, yaml: &str) -> (JobConfig, Target) {
    let cfg = parse_config(yaml).unwrap_or_else(|e| panic!("{e}")).scrape_configs.remove(0);
    let group =
        TargetGroup { source: "t".into(), targets: vec![server.address()], labels: from_pairs([("env", "test")]) };
    let target = targets_from_group(&cfg, &group).remove(0).result.unwrap().unwrap();
    (cfg, target)
}

fn find<'a>(o: &'a ScrapeOutcome, name: &str) -> Vec<&'a Sample> {
    o.samples.iter().filter(|s| s.name == name).collect()
}

fn value(o: &ScrapeOutcome, name: &str) -> f64 {
    let found = find(o, name);
    assert_eq!(found.len(), 1, "one {name} in {:#?}", o.samples);
    found[0].value
}

fn report_only(o: &ScrapeOutcome) -> bool {
    o.samples.iter().all(|s| s.name == "up" || s.name.starts_with("scrape_"))
}

const PAGE: &str = "# HELP requests_total Requests.\n\
# TYPE requests_total counter\n\
requests_total{code=\"200\"} 1027\n\
requests_total{code=\"500\"} 3 1699999999000\n\
# TYPE temperature gauge\n\
temperature 21.5\n\
go_gc_duration_seconds{quantile=\"0.5\"} 4.5e-05\n";

#[tokio::test]
async fn successful_scrape_merges_target_labels_and_reports() {
    let server = TestServer::start().await;
    server.set("/metrics", Reply::text(PAGE));
    let (cfg, target) = setup(&server, "scrape_configs:\n  - job_name: app\n    scrape_timeout: 7s\n");
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(o.health, Health::Up, "{:?}", o.error);
    assert_eq!(o.error, None);
    assert_eq!(o.scraped, 4);
    let instance = server.address();
    let want_labels = |extra: &[(&str, &str)]| {
        from_pairs(extra.iter().copied().chain([("env", "test"), ("instance", &instance), ("job", "app")]))
    };
    assert_eq!(
        o.samples[0],
        Sample {
            name: "requests_total".into(),
            labels: want_labels(&[("code", "200")]),
            value: 1027.0,
            timestamp_ms: Some(NOW)
        }
    );
    assert_eq!(o.samples[1].timestamp_ms, Some(1_699_999_999_000), "explicit timestamps are honored by default");
    assert_eq!(o.samples[2].labels, want_labels(&[]));
    assert_eq!(value(&o, "up"), 1.0);
    assert_eq!(value(&o, "scrape_samples_scraped"), 4.0);
    assert_eq!(value(&o, "scrape_samples_post_metric_relabeling"), 4.0);
    assert_eq!(value(&o, "scrape_series_added"), 4.0);
    let d = value(&o, "scrape_duration_seconds");
    assert!(d > 0.0 && d < 5.0, "{d}");
    for s in find(&o, "up") {
        assert_eq!(s.labels, want_labels(&[]));
        assert_eq!(s.timestamp_ms, Some(NOW));
    }
    assert_eq!(o.samples.len(), 9);

    let hits = server.hits("/metrics");
    assert_eq!(hits.len(), 1);
    let h = &hits[0].headers;
    assert_eq!(h["accept"], ACCEPT_HEADER);
    assert!(h["accept"].to_str().unwrap().starts_with("application/openmetrics-text;version=1.0.0"));
    assert_eq!(h["x-prometheus-scrape-timeout-seconds"], "7");
    assert!(h["user-agent"].to_str().unwrap().starts_with("Pharos/"), "{:?}", h["user-agent"]);
    assert!(h["accept-encoding"].to_str().unwrap().contains("gzip"));
}

#[tokio::test]
async fn params_and_metrics_path_reach_the_target() {
    let server = TestServer::start().await;
    server.set("/probe", Reply::text("probe_success 1\n"));
    let (cfg, target) = setup(
        &server,
        "scrape_configs:\n  - job_name: probe\n    metrics_path: /probe\n    params: {module: [http 2xx], target: ['https://example.com/?a=1']}\n",
    );
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(o.health, Health::Up, "{:?}", o.error);
    assert_eq!(
        server.hits("/probe")[0].query.as_deref(),
        Some("module=http+2xx&target=https%3A%2F%2Fexample.com%2F%3Fa%3D1")
    );
}

#[tokio::test]
async fn openmetrics_is_chosen_by_content_type() {
    let server = TestServer::start().await;
    server.set(
        "/metrics",
        Reply::openmetrics(
            "# TYPE jobs counter\njobs_total 7 1700000000.5 # {trace_id=\"abc\"} 1\njobs_created 1600000000\n# EOF\n",
        ),
    );
    let (cfg, target) = setup(&server, "scrape_configs:\n  - job_name: om\n");
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(o.health, Health::Up, "{:?}", o.error);
    assert_eq!(find(&o, "jobs_total")[0].timestamp_ms, Some(1_700_000_000_500));
    assert!(find(&o, "jobs_created").is_empty());
    assert_eq!(o.scraped, 1);

    // The same body served as text/plain is not valid text format (the exemplar), and says where.
    server.set("/metrics", Reply::text("jobs_total 7\njobs_total{a=\"b\"} 1 # {trace_id=\"abc\"} 1\n"));
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(o.health, Health::Down);
    assert_eq!(
        o.error.as_deref(),
        Some(
            r##"invalid text format exposition: line 2: expected timestamp or end of line after value, got "# {trace_id=\"abc\"} 1""##
        )
    );
    assert!(report_only(&o));
}

#[tokio::test]
async fn http_errors_mark_the_target_down() {
    let server = TestServer::start().await;
    server.set("/metrics", Reply::status(500));
    let (cfg, target) = setup(&server, "scrape_configs:\n  - job_name: app\n");
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(o.health, Health::Down);
    assert_eq!(o.error.as_deref(), Some("server returned HTTP status 500 Internal Server Error"));
    assert!(report_only(&o));
    assert_eq!(o.samples.len(), 5);
    assert_eq!(value(&o, "up"), 0.0);
    assert_eq!(value(&o, "scrape_samples_scraped"), 0.0);
    assert_eq!(find(&o, "up")[0].labels, target.labels);

    // Nothing listening.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut gone = target.clone();
    gone.url = format!("http://{dead}/metrics");
    let o = scrape(&default_client(), &gone, &cfg, NOW).await;
    assert_eq!(o.health, Health::Down);
    assert!(o.error.as_deref().unwrap().starts_with(&format!("GET http://{dead}/metrics: ")), "{:?}", o.error);
}

#[tokio::test]
async fn timeouts_fail_the_scrape_in_time() {
    let server = TestServer::start().await;
    server.set("/metrics", Reply::text(PAGE).delayed(Duration::from_secs(3)));
    let (cfg, target) =
        setup(&server, "scrape_configs:\n  - job_name: slow\n    scrape_interval: 1s\n    scrape_timeout: 300ms\n");
    let start = std::time::Instant::now();
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert!(start.elapsed() < Duration::from_millis(1500), "{:?}", start.elapsed());
    assert_eq!(o.health, Health::Down);
    assert_eq!(o.error.as_deref(), Some("scrape timed out after 300ms"));
    assert!(o.duration >= Duration::from_millis(290), "{:?}", o.duration);
    assert_eq!(server.hits("/metrics")[0].headers["x-prometheus-scrape-timeout-seconds"], "0.3");
    assert!(report_only(&o));
}

#[tokio::test]
async fn sample_limit_counts_samples_after_metric_relabeling() {
    let server = TestServer::start().await;
    server.set("/metrics", Reply::text(PAGE));
    let (cfg, target) = setup(&server, "scrape_configs:\n  - job_name: app\n    sample_limit: 3\n");
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(o.health, Health::Down);
    assert_eq!(o.error.as_deref(), Some("sample limit exceeded: 4 samples after metric relabeling, sample_limit is 3"));
    assert!(report_only(&o), "no samples are kept from a failed scrape");
    assert_eq!(value(&o, "up"), 0.0);
    assert_eq!(value(&o, "scrape_samples_scraped"), 4.0);
    assert_eq!(value(&o, "scrape_samples_post_metric_relabeling"), 4.0);
    assert_eq!(value(&o, "scrape_series_added"), 0.0);

    // Dropping one sample by metric relabeling brings it within the limit.
    let (cfg, target) = setup(
        &server,
        "scrape_configs:\n  - job_name: app\n    sample_limit: 3\n    metric_relabel_configs:\n      - {source_labels: [__name__], regex: 'go_.*', action: drop}\n",
    );
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(o.health, Health::Up, "{:?}", o.error);
    assert_eq!(value(&o, "scrape_samples_scraped"), 4.0);
    assert_eq!(value(&o, "scrape_samples_post_metric_relabeling"), 3.0);
}

#[tokio::test]
async fn label_limits_fail_the_scrape_and_say_which() {
    let server = TestServer::start().await;
    server.set("/metrics", Reply::text("m{a=\"1\",b=\"a-rather-long-value\"} 1\n"));
    let cases = [
        ("label_limit: 5", "label_limit exceeded (metric: m, number of labels: 6, limit: 5)"),
        ("label_name_length_limit: 7", "label_name_length_limit exceeded (metric: m, label name: __name__, length: 8, limit: 7)"),
        (
            "label_value_length_limit: 10",
            "label_value_length_limit exceeded (metric: m, label name: b, value: \"a-rather-long-value\", length: 19, limit: 10)",
        ),
    ];
    for (limit, want) in cases {
        let (cfg, target) = setup(&server, &format!("scrape_configs:\n  - job_name: app\n    {limit}\n"));
        let o = scrape(&default_client(), &target, &cfg, NOW).await;
        assert_eq!(o.health, Health::Down, "{limit}");
        assert_eq!(o.error.as_deref(), Some(want), "{limit}");
        assert!(report_only(&o));
    }
    let (cfg, target) =
        setup(&server, "scrape_configs:\n  - job_name: app\n    label_limit: 6\n    label_value_length_limit: 64\n");
    assert_eq!(scrape(&default_client(), &target, &cfg, NOW).await.health, Health::Up);
}

#[tokio::test]
async fn honor_labels_both_ways() {
    let server = TestServer::start().await;
    server.set(
        "/metrics",
        Reply::text("federated{job=\"other\",instance=\"x:1\",exported_job=\"taken\",zone=\"a\"} 1\n"),
    );
    let (cfg, target) = setup(&server, "scrape_configs:\n  - job_name: fed\n");
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(
        o.samples[0].labels,
        from_pairs([
            ("env", "test"),
            ("exported_exported_job", "other"),
            ("exported_instance", "x:1"),
            ("exported_job", "taken"),
            ("instance", server.address().as_str()),
            ("job", "fed"),
            ("zone", "a"),
        ]),
        "target labels win; clashing exposed labels become exported_*"
    );
    let (cfg, target) = setup(&server, "scrape_configs:\n  - job_name: fed\n    honor_labels: true\n");
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(
        o.samples[0].labels,
        from_pairs([("env", "test"), ("exported_job", "taken"), ("instance", "x:1"), ("job", "other"), ("zone", "a"),]),
        "exposed labels win; missing target labels are added"
    );
    assert_eq!(labels::get(&find(&o, "up")[0].labels, "job"), "fed", "report series always carry the target's labels");
}

#[tokio::test]
async fn honor_timestamps_false_uses_the_scrape_time() {
    let server = TestServer::start().await;
    server.set("/metrics", Reply::text(PAGE));
    let (cfg, target) = setup(&server, "scrape_configs:\n  - job_name: app\n    honor_timestamps: false\n");
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert!(o.samples.iter().all(|s| s.timestamp_ms == Some(NOW)));
}

#[tokio::test]
async fn metric_relabeling_drops_and_rewrites() {
    let server = TestServer::start().await;
    server.set("/metrics", Reply::text(PAGE));
    let (cfg, target) = setup(
        &server,
        r#"scrape_configs:
  - job_name: app
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'go_.*'
        action: drop
      - source_labels: [__name__, code]
        regex: 'requests_total;5..'
        target_label: class
        replacement: error
      - source_labels: [job]
        target_label: origin
      - regex: env
        action: labeldrop
"#,
    );
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(o.health, Health::Up, "{:?}", o.error);
    assert!(find(&o, "go_gc_duration_seconds").is_empty());
    let r = find(&o, "requests_total");
    assert_eq!(labels::get(&r[1].labels, "class"), "error");
    assert_eq!(labels::get(&r[0].labels, "class"), "");
    assert_eq!(labels::get(&r[0].labels, "origin"), "app", "metric relabeling sees the target labels");
    assert_eq!(labels::get(&r[0].labels, "env"), "");
    assert_eq!(value(&o, "scrape_samples_post_metric_relabeling"), 3.0);
    assert_eq!(labels::get(&find(&o, "up")[0].labels, "env"), "test", "report series are not relabeled");

    // Removing the name fails the scrape, as in Prometheus.
    let (cfg, target) = setup(
        &server,
        "scrape_configs:\n  - job_name: app\n    metric_relabel_configs: [{regex: __name__, action: labeldrop}]\n",
    );
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(o.health, Health::Down);
    assert_eq!(
        o.error.as_deref(),
        Some("missing metric name (__name__ label) after metric relabeling of \"requests_total\"")
    );
}

#[tokio::test]
async fn gzip_responses_are_decompressed() {
    let server = TestServer::start().await;
    let mut big = String::new();
    for i in 0..2000 {
        big.push_str(&format!("series{{n=\"{i}\"}} {i}\n"));
    }
    server.set("/metrics", Reply::text(&big).gzipped());
    let (cfg, target) = setup(&server, "scrape_configs:\n  - job_name: gz\n");
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(o.health, Health::Up, "{:?}", o.error);
    assert_eq!(o.scraped, 2000);
    assert_eq!(o.samples[1999].value, 1999.0);

    // body_size_limit applies to the decompressed body.
    let (cfg, target) = setup(&server, "scrape_configs:\n  - job_name: gz\n    body_size_limit: 10KB\n");
    let o = scrape(&default_client(), &target, &cfg, NOW).await;
    assert_eq!(o.health, Health::Down);
    assert_eq!(
        o.error.as_deref(),
        Some("body size limit exceeded: the body is larger than body_size_limit 10240 bytes")
    );
    assert!(report_only(&o));
}
