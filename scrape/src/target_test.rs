use super::*;
use crate::config::parse_config;
use crate::labels::from_pairs;

fn job(yaml: &str) -> JobConfig {
    let c = parse_config(yaml).unwrap_or_else(|e| panic!("{e}"));
    c.scrape_configs.into_iter().next().expect("one job")
}

fn group(targets: &[&str], labels: &[(&str, &str)]) -> TargetGroup {
    TargetGroup {
        source: "test:0".into(),
        targets: targets.iter().map(|s| s.to_string()).collect(),
        labels: from_pairs(labels.iter().copied()),
    }
}

fn active(job: &JobConfig, g: &TargetGroup) -> Vec<Target> {
    targets_from_group(job, g).into_iter().filter_map(|d| d.result.ok().flatten()).collect()
}

#[test]
fn discovered_labels_and_defaults() {
    let j =
        job("scrape_configs:\n  - job_name: node\n    scrape_interval: 15s\n    params: {'collect[]': [cpu, mem]}\n");
    let d = targets_from_group(&j, &group(&["10.0.0.1:9100"], &[("env", "prod"), ("__meta_zone", "a")]));
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].discovered_labels,
        from_pairs([
            ("__address__", "10.0.0.1:9100"),
            ("__meta_zone", "a"),
            ("__metrics_path__", "/metrics"),
            ("__param_collect[]", "cpu"),
            ("__scheme__", "http"),
            ("__scrape_interval__", "15s"),
            ("__scrape_timeout__", "10s"),
            ("env", "prod"),
            ("job", "node"),
        ])
    );
    let t = d[0].result.clone().unwrap().unwrap();
    assert_eq!(t.job, "node");
    assert_eq!(t.labels, from_pairs([("env", "prod"), ("instance", "10.0.0.1:9100"), ("job", "node")]));
    assert_eq!(t.url, "http://10.0.0.1:9100/metrics?collect%5B%5D=cpu&collect%5B%5D=mem");
    assert_eq!((t.interval, t.timeout), (Duration::from_secs(15), Duration::from_secs(10)));
    assert_eq!(t.key, format!("node|{}|{:016x}", t.url, labels::hash(&t.labels)));
}

#[test]
fn group_labels_override_job_defaults_and_address_wins_over_group() {
    let j = job("scrape_configs:\n  - job_name: node\n");
    let t = &active(
        &j,
        &group(
            &["h:1"],
            &[("job", "custom"), ("__address__", "ignored:2"), ("__metrics_path__", "/m"), ("__scheme__", "https")],
        ),
    )[0];
    assert_eq!(t.url, "https://h:1/m");
    assert_eq!(labels::get(&t.labels, "job"), "custom");
    assert_eq!(t.job, "node", "the scrape pool stays the config's job");
}

#[test]
fn relabeling_drops_and_rewrites() {
    let j = job(r#"scrape_configs:
  - job_name: node
    relabel_configs:
      - source_labels: [env]
        regex: dev
        action: drop
      - source_labels: [__address__]
        regex: '([^:]+):\d+'
        target_label: host
      - source_labels: [__meta_port]
        regex: '(\d+)'
        target_label: __address__
        replacement: 'override:$1'
"#);
    let g = group(&["a:1", "b:2"], &[("env", "prod")]);
    let ts = active(&j, &g);
    assert_eq!(ts.iter().map(|t| t.url.as_str()).collect::<Vec<_>>(), vec!["http://a:1/metrics", "http://b:2/metrics"]);
    assert_eq!(labels::get(&ts[1].labels, "host"), "b");
    assert!(active(&j, &group(&["a:1"], &[("env", "dev")])).is_empty());
    let d = targets_from_group(&j, &group(&["a:1"], &[("env", "dev")]));
    assert_eq!(d[0].result, Ok(None), "dropped by relabeling");
    let moved = &active(&j, &group(&["a:1"], &[("__meta_port", "7")]))[0];
    assert_eq!(moved.url, "http://override:7/metrics");
    assert_eq!(labels::get(&moved.labels, "instance"), "override:7", "instance defaults to the relabeled address");
    assert!(!moved.labels.iter().any(|(n, _)| n.starts_with("__")));
}

#[test]
fn explicit_instance_is_kept() {
    let j =
        job("scrape_configs:\n  - job_name: x\n    relabel_configs: [{target_label: instance, replacement: pretty}]\n");
    let t = &active(&j, &group(&["10.1.1.1:80"], &[]))[0];
    assert_eq!(labels::get(&t.labels, "instance"), "pretty");
}

#[test]
fn blackbox_exporter_pattern_puts_the_target_in_a_param() {
    let j = job(r#"scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params: {module: [http_2xx]}
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:9115
"#);
    let t = &active(&j, &group(&["https://example.com/a b"], &[]))[0];
    assert_eq!(t.url, "http://127.0.0.1:9115/probe?module=http_2xx&target=https%3A%2F%2Fexample.com%2Fa+b");
    assert_eq!(labels::get(&t.labels, "instance"), "https://example.com/a b");
}

#[test]
fn param_labels_replace_the_first_configured_value() {
    let j = job("scrape_configs:\n  - job_name: x\n    params: {a: ['1', '2']}\n    relabel_configs: [{target_label: __param_a, replacement: '9'}]\n");
    assert_eq!(active(&j, &group(&["h:1"], &[]))[0].url, "http://h:1/metrics?a=9&a=2");
}

#[test]
fn per_target_interval_and_errors() {
    let j = job("scrape_configs:\n  - job_name: x\n    scrape_interval: 30s\n    relabel_configs:\n      - {source_labels: [iv], regex: '(.+)', target_label: __scrape_interval__}\n      - {source_labels: [to], regex: '(.+)', target_label: __scrape_timeout__}\n");
    let t = &active(&j, &group(&["h:1"], &[("iv", "1m")]))[0];
    assert_eq!(t.interval, Duration::from_secs(60));
    assert_eq!(labels::get(&t.labels, "iv"), "1m");
    let err = |labels: &[(&str, &str)], address: &str| {
        targets_from_group(&j, &group(&[address], labels)).remove(0).result.unwrap_err().to_string()
    };
    assert_eq!(err(&[("iv", "5s")], "h:1"), r#"scrape timeout cannot be greater than scrape interval ("10s" > "5s")"#);
    assert_eq!(err(&[("iv", "0s")], "h:1"), "scrape interval cannot be 0");
    assert_eq!(err(&[("to", "0s")], "h:1"), "scrape timeout cannot be 0");
    assert_eq!(
        err(&[("iv", "soon")], "h:1"),
        r#"error parsing scrape interval: invalid duration "soon": expected a number (durations look like 1h30m, 15s or 500ms)"#
    );
    assert_eq!(err(&[], "h:1/path"), r#""h:1/path" is not a valid hostname (an address may not contain '/')"#);
    assert_eq!(err(&[], ""), "no address (__address__ is empty after relabeling)");
}

#[test]
fn keys_are_stable_and_distinguish_targets() {
    let j = job("scrape_configs:\n  - job_name: x\n");
    let a = active(&j, &group(&["h:1", "h:2"], &[]));
    let again = active(&j, &group(&["h:1"], &[]));
    assert_eq!(a[0].key, again[0].key);
    assert_ne!(a[0].key, a[1].key);
    let other_labels = active(&j, &group(&["h:1"], &[("team", "b")]));
    assert_ne!(a[0].key, other_labels[0].key);
    assert!(a[0].key.starts_with("x|http://h:1/metrics|"));
}
