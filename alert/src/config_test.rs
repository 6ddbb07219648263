use super::*;
use crate::labels::labels;

const EXAMPLE: &str = include_str!("../examples/routing.yml");

fn example() -> RoutingConfig {
    parse_routing_config(EXAMPLE).unwrap_or_else(|e| panic!("{e:#?}"))
}

fn errors(text: &str) -> Vec<String> {
    match parse_routing_config_named("routing.yml", text) {
        Ok(_) => vec![],
        Err(es) => es.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_example_tree_inherits_from_parents() {
    let c = example();
    let root = &c.route;
    assert_eq!((root.receiver.as_str(), root.key.as_str()), ("team-email", "{}"));
    assert_eq!(root.group_by, GroupBy::Labels(vec!["alertname".into(), "service".into()]));
    assert_eq!(
        root.timing,
        GroupTiming {
            group_wait: PromDuration(30_000),
            group_interval: PromDuration(300_000),
            repeat_interval: PromDuration(14_400_000)
        }
    );
    let oncall = &root.routes[0];
    assert_eq!((oncall.receiver.as_str(), oncall.continue_matching), ("oncall", true));
    assert_eq!(oncall.key, "{}/{severity=\"page\"}/0");
    assert_eq!(
        oncall.timing,
        GroupTiming {
            group_wait: PromDuration(10_000),
            group_interval: PromDuration(300_000),
            repeat_interval: PromDuration(3_600_000)
        }
    );
    assert_eq!(root.routes[1].group_by, GroupBy::All);
    let billing = &root.routes[2].routes[0];
    assert_eq!(billing.key, "{}/{severity=~\"warning|ticket\"}/2/{service=\"billing\"}/0");
    assert_eq!(billing.group_by, root.group_by);
    assert_eq!(billing.timing, root.timing);
    assert_eq!(c.inhibit_rules.len(), 1);
    assert_eq!(c.inhibit_rules[0].equal, vec!["service".to_string()]);
}

#[test]
fn receivers_get_defaults() {
    let c = example();
    let e = &c.receiver("team-email").unwrap().email_configs[0];
    assert_eq!(
        (e.to.as_str(), e.from.as_str(), e.smarthost.as_str(), e.auth_username.as_deref(), e.auth_password.as_deref()),
        ("team@example.com", "pharos@example.com", "smtp.example.com:587", Some("pharos"), Some("secret"))
    );
    assert_eq!((e.require_tls, e.send_resolved), (Some(true), false));
    assert!(c.receiver("billing-email").unwrap().email_configs[0].send_resolved);
    let oncall = c.receiver("oncall").unwrap();
    let pd = &oncall.pagerduty_configs[0];
    assert_eq!(
        (pd.url.as_str(), pd.severity.as_deref(), pd.send_resolved),
        (DEFAULT_PAGERDUTY_URL, Some("critical"), true)
    );
    let sms = &oncall.sms_configs[0];
    assert_eq!(
        (sms.url.as_str(), sms.from.as_str(), sms.to.as_str(), sms.send_resolved),
        (DEFAULT_SMS_URL, "+15550000001", "+15550000002", false)
    );
    let wh = &c.receiver("infra-webhook").unwrap().webhook_configs[0];
    assert_eq!((wh.url.as_str(), wh.send_resolved, wh.max_alerts), ("https://hooks.example.com/infra", true, 20));
    assert!(c.receiver("nobody").is_none());
    let ids: Vec<(String, bool)> =
        c.receiver("oncall").unwrap().integrations().into_iter().map(|i| (i.id, i.send_resolved)).collect();
    assert_eq!(ids, vec![("pagerduty/0".to_string(), true), ("sms/0".to_string(), false)]);
    let ids: Vec<(String, bool)> =
        c.receiver("team-webhook").unwrap().integrations().into_iter().map(|i| (i.id, i.send_resolved)).collect();
    assert_eq!(ids, vec![("webhook/0".to_string(), true), ("alertmanager/0".to_string(), true)]);
}

#[test]
fn routing_table() {
    let c = example();
    type Pairs = Vec<(&'static str, &'static str)>;
    // (alert labels, expected (receiver, group key) list)
    let cases: Vec<(Pairs, Pairs)> = vec![
        (
            vec![("alertname", "Down"), ("service", "api"), ("severity", "page")],
            vec![("oncall", r#"{}/{severity="page"}/0:{alertname="Down", service="api"}"#)],
        ),
        (
            // continue: the page also reaches the infra route; '...' groups by every label.
            vec![("alertname", "DiskFull"), ("severity", "page"), ("team", "db"), ("env", "prod")],
            vec![
                ("oncall", r#"{}/{severity="page"}/0:{alertname="DiskFull"}"#),
                (
                    "infra-webhook",
                    r#"{}/{team=~"db|infra",env!="dev"}/1:{alertname="DiskFull", env="prod", severity="page", team="db"}"#,
                ),
            ],
        ),
        (
            vec![("alertname", "Slow"), ("service", "billing"), ("severity", "warning")],
            vec![(
                "billing-email",
                r#"{}/{severity=~"warning|ticket"}/2/{service="billing"}/0:{alertname="Slow", service="billing"}"#,
            )],
        ),
        (
            vec![("alertname", "Slow"), ("service", "api"), ("severity", "ticket")],
            vec![("team-webhook", r#"{}/{severity=~"warning|ticket"}/2:{alertname="Slow", service="api"}"#)],
        ),
        (
            vec![("alertname", "Odd"), ("team", "db"), ("env", "dev"), ("severity", "info")],
            vec![("team-email", r#"{}:{alertname="Odd"}"#)],
        ),
        (vec![], vec![("team-email", "{}:{}")]),
    ];
    for (l, want) in cases {
        let l = labels(l);
        let got: Vec<(String, String)> = c.destinations(&l).into_iter().map(|d| (d.receiver, d.group_key)).collect();
        let want: Vec<(String, String)> = want.into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(got, want, "{l:?}");
    }
    let d = &c.destinations(&labels([("alertname", "Down"), ("severity", "page"), ("instance", "x")]))[0];
    assert_eq!(d.group_labels, labels([("alertname", "Down")]));
    assert_eq!(d.timing.group_wait, PromDuration(10_000));
}

#[test]
fn a_minimal_config() {
    let c = parse_routing_config("route: {receiver: r}\nreceivers: [{name: r}]\n").unwrap();
    assert_eq!(c.route.group_by, GroupBy::Labels(vec![]));
    assert_eq!(c.route.timing, GroupTiming::default());
    assert_eq!(c.destinations(&labels([("a", "b")]))[0].group_key, "{}:{}");
}

#[test]
fn validation_errors() {
    let text = r#"
route:
  receiver: missing
  matchers: ['a="b"']
  group_wait: 0s
  routes:
    - matchers: ['severity="page', 'x=~"("']
      group_interval: 0s
      repeat_interval: 5x
    - group_by: ['...', alertname]
      receiver: r
    - match: {"bad-name": x}
      group_by: [a-b]
receivers:
  - name: r
    email_configs: [{to: a@b.c}]
    webhook_configs: [{url: ftp://x}]
    pagerduty_configs: [{severity: urgent}]
    sms_configs: [{to: "+1"}]
    alertmanager_configs: [{}]
  - name: r
  - email_configs: [{to: x@y.z, from: f@y.z, smarthost: nohost}]
inhibit_rules:
  - equal: [a.b]
"#;
    let want = [
        r#"routing.yml:3: route.receiver: receiver "missing" is not defined"#,
        "routing.yml:4: route.matchers: the root route must not have matchers (it receives every alert)",
        r#"routing.yml:7: route.routes[0].matchers[0]: bad matcher "severity=\"page": unterminated quoted value"#,
        "routing.yml:7: route.routes[0].matchers[1]: bad matcher \"x=~\\\"(\\\"\": regex parse error:\n    ^(?:()$\n     ^\nerror: unclosed group",
        "routing.yml:8: route.routes[0].group_interval: must be greater than 0",
        r#"routing.yml:9: route.routes[0].repeat_interval: invalid duration "5x": unknown unit (use ms, s, m, h, d, w or y)"#,
        "routing.yml:10: route.routes[1].group_by: '...' groups by all labels and must be alone",
        r#"routing.yml:12: route.routes[2].match.bad-name: bad matcher "bad-name=\"x\"": invalid label name "bad-name""#,
        r#"routing.yml:13: route.routes[2].group_by: invalid label name "a-b""#,
        "routing.yml:16: receivers[0].email_configs[0].from: missing (and no global.smtp_from)",
        "routing.yml:16: receivers[0].email_configs[0].smarthost: missing (and no global.smtp_smarthost)",
        r#"routing.yml:17: receivers[0].webhook_configs[0].url: "ftp://x" is not an http:// or https:// URL"#,
        "routing.yml:18: receivers[0].pagerduty_configs[0].routing_key: missing",
        r#"routing.yml:18: receivers[0].pagerduty_configs[0].severity: "urgent" is not critical, error, warning or info"#,
        "routing.yml:19: receivers[0].sms_configs[0].account_sid: missing",
        "routing.yml:19: receivers[0].sms_configs[0].auth_token: missing",
        "routing.yml:19: receivers[0].sms_configs[0].from: missing",
        "routing.yml:20: receivers[0].alertmanager_configs[0].url: missing",
        r#"routing.yml:21: receivers[1].name: receiver "r" is defined twice (first at line 15)"#,
        "routing.yml:22: receivers[2].name: a receiver needs a name",
        r#"routing.yml:22: receivers[2].email_configs[0].smarthost: "nohost" is not host:port"#,
        r#"routing.yml:24: inhibit_rules[0].equal: invalid label name "a.b""#,
        "routing.yml:24: inhibit_rules[0]: an inhibit rule needs source and target matchers",
    ];
    let got = errors(text);
    assert_eq!(got, want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "\n{}", got.join("\n"));
}

#[test]
fn structural_errors() {
    let cases = [
        ("receivers: []\n", "line 1: route: missing (the root route and its receiver)"),
        ("route: {}\n", "line 1: route: the root route needs a receiver"),
        ("route: {receiver: r, continue: true}\nreceivers: [{name: r}]\n", "line 1: route: the root route cannot have continue"),
        (
            "route: {receiver: r}\nreceivers: [{name: r, slack_configs: []}]\n",
            "line 2: receivers[0]: unknown field `slack_configs`, expected one of `name`, `email_configs`, `webhook_configs`, `pagerduty_configs`, `sms_configs`, `alertmanager_configs`",
        ),
        ("route:\n  receiver: [r]\n", "line 2: route.receiver: invalid type: sequence, expected a string"),
    ];
    for (text, want) in cases {
        let got: Vec<String> = parse_routing_config(text).unwrap_err().iter().map(ToString::to_string).collect();
        assert_eq!(got, vec![want.to_string()], "{text}");
    }
}

#[test]
fn legacy_inhibit_matchers() {
    let c = parse_routing_config(
        "route: {receiver: r}\nreceivers: [{name: r}]\ninhibit_rules:\n  - source_match: {severity: page}\n    target_match_re: {severity: 'warn.*'}\n",
    )
    .unwrap();
    let r = &c.inhibit_rules[0];
    assert_eq!(crate::matcher::format_matchers(&r.source_matchers), r#"{severity="page"}"#);
    assert_eq!(crate::matcher::format_matchers(&r.target_matchers), r#"{severity=~"warn.*"}"#);
}

#[test]
fn configs_round_trip_through_json() {
    let c = example();
    let back: RoutingConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn webhook_and_alertmanager_receivers_take_credentials_from_http_config() {
    let c = parse_routing_config(
        "route: {receiver: r}
receivers:
  - name: r
    webhook_configs:
      - url: https://hooks.example/x
        http_config: {authorization: {credentials: t0k}}
      - url: https://hooks.example/y
        http_config: {basic_auth: {username: u, password_file: /etc/p}}
    alertmanager_configs:
      - url: http://am:9093
        http_config: {bearer_token: b}
",
    )
    .unwrap();
    let r = &c.receivers[0];
    let auth = |h: &Option<HttpConfig>| http_auth(h).map(|a| format!("{a:?}"));
    assert_eq!(http_auth(&r.webhook_configs[0].http_config).unwrap().header().unwrap(), "Bearer t0k");
    assert!(auth(&r.webhook_configs[1].http_config).unwrap().contains("/etc/p"));
    assert_eq!(http_auth(&r.alertmanager_configs[0].http_config).unwrap().header().unwrap(), "Bearer b");
    let e = errors(
        "route: {receiver: r}\nreceivers:\n  - name: r\n    webhook_configs:\n      - url: http://h\n        http_config: {bearer_token: a, basic_auth: {username: u}}\n",
    );
    assert!(e.iter().any(|m| m.contains("at most one of") && m.contains("http_config")), "{e:?}");
    let e = errors(
        "route: {receiver: r}\nreceivers:\n  - name: r\n    webhook_configs:\n      - url: http://h\n        http_config: {tls_config: {}}\n",
    );
    assert!(!e.is_empty(), "unknown http_config fields are refused: {e:?}");
}
