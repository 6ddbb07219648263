use super::*;
use crate::labels::from_pairs;
use crate::relabel::Action;

fn ok(text: &str) -> ScrapeConfig {
    parse_config(text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    parse_config(text).expect_err("should fail").to_string()
}

#[test]
fn defaults() {
    let c = ok("scrape_configs:\n  - job_name: node\n    static_configs: [{targets: ['a:9100']}]\n");
    assert_eq!(c.global, GlobalConfig::default());
    let j = &c.scrape_configs[0];
    let mut want = JobConfig::new("node");
    want.static_configs = vec![StaticConfig { targets: vec!["a:9100".into()], labels: vec![] }];
    assert_eq!(j, &want);
    assert_eq!(j.scrape_interval, Duration::from_secs(60));
    assert_eq!(j.scrape_timeout, Duration::from_secs(10));
    assert_eq!(j.metrics_path, "/metrics");
    assert_eq!(j.scheme, Scheme::Http);
    assert!(j.honor_timestamps && !j.honor_labels);
    assert_eq!((j.sample_limit, j.label_limit, j.body_size_limit), (0, 0, 0));
}

#[test]
fn empty_documents_are_empty_configs() {
    assert_eq!(ok(""), ScrapeConfig::default());
    assert_eq!(ok("# nothing yet\n"), ScrapeConfig::default());
    assert_eq!(ok("scrape_configs: []\n").scrape_configs, vec![]);
}

#[test]
fn global_values_are_inherited() {
    let c = ok("global:\n  scrape_interval: 5s\n  sample_limit: 100\n  body_size_limit: 1MB\nscrape_configs:\n  - job_name: a\n  - job_name: b\n    scrape_interval: 1m\n    sample_limit: 7\n");
    assert_eq!(c.global.scrape_interval, Duration::from_secs(5));
    assert_eq!(c.global.scrape_timeout, Duration::from_secs(5), "the default timeout is capped at the interval");
    let a = c.job("a").unwrap();
    assert_eq!((a.scrape_interval, a.scrape_timeout), (Duration::from_secs(5), Duration::from_secs(5)));
    assert_eq!((a.sample_limit, a.body_size_limit), (100, 1 << 20));
    let b = c.job("b").unwrap();
    assert_eq!((b.scrape_interval, b.scrape_timeout), (Duration::from_secs(60), Duration::from_secs(5)));
    assert_eq!(b.sample_limit, 7);
}

#[test]
fn job_interval_shorter_than_global_timeout_caps_the_timeout() {
    let c = ok("scrape_configs:\n  - job_name: fast\n    scrape_interval: 2s\n");
    assert_eq!(c.scrape_configs[0].scrape_timeout, Duration::from_secs(2));
    // Even an explicit global timeout only caps: as in Prometheus, the job inherits min(global timeout, interval).
    let c = ok("global:\n  scrape_timeout: 30s\nscrape_configs:\n  - job_name: a\n    scrape_interval: 15s\n");
    assert_eq!(c.scrape_configs[0].scrape_timeout, Duration::from_secs(15));
}

const FULL: &str = r#"global:
  scrape_interval: 15s
  scrape_timeout: 5s
  evaluation_interval: 30s
  external_labels:
    dc: eu1
scrape_configs:
  - job_name: blackbox
    scrape_interval: 30s
    scrape_timeout: 20s
    metrics_path: /probe
    scheme: https
    params:
      module: [http_2xx, extra]
      debug: ["true"]
    honor_labels: true
    honor_timestamps: false
    sample_limit: 1000
    label_limit: 30
    label_name_length_limit: 100
    label_value_length_limit: 200
    body_size_limit: 10MB
    static_configs:
      - targets: ['https://example.com', 'https://example.org']
        labels:
          env: prod
          rack: 12
    file_sd_configs:
      - files: ['/etc/pharos/*.json', 'more.yml']
        refresh_interval: 1m
      - files: ['x.yaml']
    http_sd_configs:
      - url: http://sd.example.com/targets
        refresh_interval: 2m
      - url: https://sd.example.com/other
    dns_sd_configs:
      - names: ['_node._tcp.example.com']
      - names: [db.example.com, db2.example.com]
        type: a
        port: 9100
        refresh_interval: 10s
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: blackbox:9115
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'go_.*'
        action: drop
"#;

#[test]
fn every_field() {
    let c = ok(FULL);
    assert_eq!(c.global.scrape_interval, Duration::from_secs(15));
    assert_eq!(c.global.scrape_timeout, Duration::from_secs(5));
    assert_eq!(c.global.external_labels, from_pairs([("dc", "eu1")]));
    let j = c.job("blackbox").unwrap();
    assert_eq!(j.scrape_interval, Duration::from_secs(30));
    assert_eq!(j.scrape_timeout, Duration::from_secs(20));
    assert_eq!(j.metrics_path, "/probe");
    assert_eq!(j.scheme, Scheme::Https);
    assert_eq!(j.params.get("module"), Some(&vec!["http_2xx".to_string(), "extra".to_string()]));
    assert_eq!(j.params.get("debug"), Some(&vec!["true".to_string()]));
    assert!(j.honor_labels);
    assert!(!j.honor_timestamps);
    assert_eq!(
        (j.sample_limit, j.label_limit, j.label_name_length_limit, j.label_value_length_limit, j.body_size_limit),
        (1000, 30, 100, 200, 10 << 20)
    );
    assert_eq!(
        j.static_configs,
        vec![StaticConfig {
            targets: vec!["https://example.com".into(), "https://example.org".into()],
            labels: from_pairs([("env", "prod"), ("rack", "12")]),
        }]
    );
    assert_eq!(
        j.file_sd_configs,
        vec![
            FileSdConfig {
                files: vec!["/etc/pharos/*.json".into(), "more.yml".into()],
                refresh_interval: Duration::from_secs(60)
            },
            FileSdConfig { files: vec!["x.yaml".into()], refresh_interval: Duration::from_secs(300) },
        ]
    );
    assert_eq!(
        j.http_sd_configs,
        vec![
            HttpSdConfig { url: "http://sd.example.com/targets".into(), refresh_interval: Duration::from_secs(120) },
            HttpSdConfig { url: "https://sd.example.com/other".into(), refresh_interval: Duration::from_secs(60) },
        ]
    );
    assert_eq!(
        j.dns_sd_configs,
        vec![
            DnsSdConfig {
                names: vec!["_node._tcp.example.com".into()],
                record_type: DnsRecordType::Srv,
                port: None,
                refresh_interval: Duration::from_secs(30)
            },
            DnsSdConfig {
                names: vec!["db.example.com".into(), "db2.example.com".into()],
                record_type: DnsRecordType::A,
                port: Some(9100),
                refresh_interval: Duration::from_secs(10)
            },
        ]
    );
    assert_eq!(j.relabel_configs.len(), 3);
    assert_eq!(j.relabel_configs[2].replacement, "blackbox:9115");
    assert_eq!(j.metric_relabel_configs[0].action, Action::Drop);
    assert_eq!(j.metric_relabel_configs[0].regex_text(), "go_.*");
    assert!(j.same_discovery(&j.clone()));
}

#[test]
fn errors_name_the_line_and_job() {
    let cases: &[(&str, &str)] = &[
        (
            "scrape_configs:\n  - job_name: a\n    scrape_intervall: 5s\n",
            "line 3: job \"a\": scrape_configs[0]: unknown field `scrape_intervall`, expected one of `job_name`, `scrape_interval`, `scrape_timeout`, `metrics_path`, `scheme`, `params`, `honor_labels`, `honor_timestamps`, `sample_limit`, `label_limit`, `label_name_length_limit`, `label_value_length_limit`, `body_size_limit`, `static_configs`, `file_sd_configs`, `http_sd_configs`, `dns_sd_configs`, `relabel_configs`, `metric_relabel_configs`, `authorization`, `basic_auth`, `bearer_token`, `bearer_token_file`, `tls_config`",
        ),
        (
            "scrape_config_files: [jobs/*.yml]\n",
            "line 1: unknown field `scrape_config_files`, expected one of `global`, `scrape_configs`, `rule_files`, `alerting`, `remote_write`, `remote_read`, `storage`, `tracing`",
        ),
        (
            "global:\n  scrape_interval: 5 minutes\n",
            "line 2: global.scrape_interval: invalid duration \"5 minutes\": missing unit (ms, s, m, h, d, w or y)",
        ),
        (
            "scrape_configs:\n  - job_name: a\n  - job_name: b\n    scrape_timeout: 1x\n",
            "line 4: job \"b\": scrape_configs[1].scrape_timeout: invalid duration \"1x\": unknown unit (use ms, s, m, h, d, w or y)",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    body_size_limit: 10\n",
            "line 3: job \"a\": scrape_configs[0].body_size_limit: invalid size \"10\": missing unit (B, KB, MB, GB, TB, PB or EB)",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: [a]\n        label: {x: y}\n",
            "line 5: job \"a\": scrape_configs[0].static_configs[0]: unknown field `label`, expected `targets` or `labels`",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    sample_limit: -1\n",
            "line 3: job \"a\": scrape_configs[0].sample_limit: invalid type: integer `-1`, expected u64",
        ),
        (
            "global:\n  scrape_interval: 10s\n  scrape_timeout: 20s\n",
            "line 3: global scrape_timeout 20s is greater than scrape_interval 10s",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 6s\n",
            "line 4: job \"a\": scrape_timeout 6s is greater than scrape_interval 5s",
        ),
        ("scrape_configs:\n  - scrape_interval: 5s\n", "line 2: job_name is required"),
        (
            "scrape_configs:\n  - job_name: a\n  - job_name: b\n  - job_name: a\n",
            "line 4: job \"a\": found multiple scrape configs with job name \"a\"",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    scheme: ftp\n",
            "line 3: job \"a\": scheme must be http or https, not \"ftp\"",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: [x]\n        labels:\n          ok: 1\n          bad-name: 2\n",
            "line 7: job \"a\": \"bad-name\" is not a valid label name",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    file_sd_configs:\n      - files:\n          - targets.txt\n",
            "line 5: job \"a\": path name \"targets.txt\" is not valid for file discovery (it must end in .json, .yml or .yaml, and only its last element may contain a *)",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    file_sd_configs:\n      - files: ['/etc/*/targets.json']\n",
            "line 4: job \"a\": path name \"/etc/*/targets.json\" is not valid for file discovery (it must end in .json, .yml or .yaml, and only its last element may contain a *)",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    http_sd_configs:\n      - refresh_interval: 1m\n",
            "line 4: job \"a\": http_sd_configs: url is missing",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    http_sd_configs:\n      - url: ftp://x/y\n",
            "line 4: job \"a\": http_sd url \"ftp://x/y\": scheme must be http or https",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    dns_sd_configs:\n      - names: [x.example.com]\n        type: A\n",
            "line 4: job \"a\": dns_sd_configs: a port is required for A and AAAA records (only SRV records carry one)",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    dns_sd_configs:\n      - names: [x]\n        type: MX\n",
            "line 5: job \"a\": invalid DNS-SD record type \"MX\" (use SRV, A or AAAA)",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    dns_sd_configs:\n      - type: SRV\n",
            "line 4: job \"a\": dns_sd_configs: at least one name is required in names",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - source_labels: [x]\n        target_label: y\n      - source_labels: [x]\n        action: replace\n",
            "line 6: job \"a\": relabel_configs[1]: relabel configuration for replace action requires 'target_label' value",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    metric_relabel_configs:\n      - source_labels: [x]\n        regex: 'a(b'\n        action: drop\n",
            "line 5: job \"a\": metric_relabel_configs[0]: invalid regex \"a(b\": error: unclosed group",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: hashmod\n        target_label: x\n",
            "line 4: job \"a\": relabel_configs[0]: relabel configuration for hashmod requires non-zero modulus",
        ),
        ("scrape_configs:\n  - job_name: a\n    scheme: \"http\n", "line 4: found unexpected end of stream, while scanning a quoted scalar at line 3 column 13"),
    ];
    for (text, want) in cases {
        let got = err(text);
        assert_eq!(&got, want, "\n{text}");
    }
}

#[test]
fn config_files_resolve_relative_sd_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prometheus.yml");
    std::fs::write(
        &path,
        "scrape_configs:\n  - job_name: a\n    file_sd_configs: [{files: ['t/*.json', '/abs/x.json']}]\n",
    )
    .unwrap();
    let c = parse_config_file(&path).unwrap();
    assert_eq!(
        c.scrape_configs[0].file_sd_configs[0].files,
        vec![dir.path().join("t/*.json").display().to_string(), "/abs/x.json".to_string()]
    );
    std::fs::write(&path, "scrape_configs:\n  - job_name: a\n    scheme: gopher\n").unwrap();
    assert_eq!(
        parse_config_file(&path).unwrap_err().to_string(),
        format!("{}:3: job \"a\": scheme must be http or https, not \"gopher\"", path.display())
    );
}

#[test]
fn a_whole_prometheus_yml_is_accepted_for_its_scrape_configs() {
    let text = "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\nrule_files: [rules.yml]\n\
alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['am:9093']\n\
remote_write:\n  - url: http://pharos:8086/api/v1/write\n\
scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['h:9100']\n";
    let c = parse_config(text).expect("a whole prometheus.yml");
    assert_eq!(c.scrape_configs.len(), 1);
    assert_eq!(c.scrape_configs[0].scrape_interval, std::time::Duration::from_secs(15));
}

#[test]
fn credentials_and_tls_for_secured_targets() {
    let c = ok("scrape_configs:
  - job_name: a
    authorization: {credentials_file: /etc/t}
    tls_config: {ca_file: /etc/ca.crt, min_version: TLS13}
  - job_name: b
    basic_auth: {username: u, password: p}
    tls_config: {cert_file: c.crt, key_file: c.key, insecure_skip_verify: true}
  - job_name: c
    bearer_token: t0k
");
    let a = &c.scrape_configs[0].http;
    assert_eq!(
        a.auth,
        Some(ClientAuth::Header { scheme: "Bearer".into(), credentials: Secret::File("/etc/t".into()) })
    );
    assert_eq!(a.tls.ca_file.as_deref(), Some(std::path::Path::new("/etc/ca.crt")));
    assert_eq!(a.tls.min_version.as_deref(), Some("TLS13"));
    let b = &c.scrape_configs[1].http;
    assert_eq!(b.auth.as_ref().unwrap().header().unwrap(), "Basic dTpw");
    assert!(b.tls.insecure_skip_verify && b.tls.cert_file.is_some());
    assert_eq!(c.scrape_configs[2].http.auth.as_ref().unwrap().header().unwrap(), "Bearer t0k");
    assert!(c.scrape_configs[2].http.tls.is_default());

    let e = err("scrape_configs:\n  - job_name: a\n    bearer_token: x\n    basic_auth: {username: u}\n");
    assert!(e.contains("at most one of") && e.contains("line 2"), "{e}");
    let e = err("scrape_configs:\n  - job_name: a\n    basic_auth: {username: u, password: p, password_file: f}\n");
    assert!(e.contains("mutually exclusive") && e.contains("line 3"), "{e}");
    let e = err("scrape_configs:\n  - job_name: a\n    tls_config: {cert_file: c.crt}\n");
    assert!(e.contains("go together"), "{e}");
    let e = err("scrape_configs:\n  - job_name: a\n    tls_config: {server_name: x}\n");
    assert!(e.contains("server_name"), "{e}");
    let e = err("scrape_configs:\n  - job_name: a\n    tls_config: {min_version: TLS10}\n");
    assert!(e.contains("TLS12 or TLS13"), "{e}");
}
