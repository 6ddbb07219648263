use super::*;
use crate::config::{AlertmanagerConfig, WebhookConfig};
use crate::labels::{fingerprint_hex, labels};
use serde_json::json;

const T0: i64 = 1_706_702_400_000; // 2024-01-31T12:00:00Z

fn alert(instance: &str, resolved_at: Option<i64>, summary: &str) -> Alert {
    Alert {
        labels: labels([
            ("alertname", "HighLatency"),
            ("service", "api"),
            ("severity", "page"),
            ("instance", instance),
        ]),
        annotations: labels([("summary", summary), ("runbook", "https://rb/latency")]),
        starts_at: T0,
        ends_at: resolved_at,
        generator_url: format!("https://pharos.example/graph?i={instance}"),
    }
}

fn alerts() -> Vec<Alert> {
    vec![
        alert("b:80", None, "p99 2.5k ms on b"),
        alert("a:80", None, "p99 1.5k ms on a"),
        alert("c:80", Some(T0 + 90_500), "p99 600 ms on c"),
    ]
}

fn group() -> Labels {
    labels([("alertname", "HighLatency"), ("service", "api")])
}

const KEY: &str = r#"{}/{severity="page"}/0:{alertname="HighLatency", service="api"}"#;

fn note<'a>(alerts: &'a [Alert], g: &'a Labels) -> Notification<'a> {
    Notification { receiver: "oncall", group_key: KEY, group_labels: g, alerts, external_url: "https://pharos.example" }
}

fn fp(instance: &str) -> String {
    fingerprint_hex(alert(instance, None, "").fingerprint())
}

#[test]
fn titles() {
    let (a, g) = (alerts(), group());
    assert_eq!(note(&a, &g).title(), "[FIRING:2] HighLatency api (page)");
    let resolved: Vec<Alert> = a.iter().filter(|x| !x.is_firing()).cloned().collect();
    assert_eq!(note(&resolved, &g).title(), "[RESOLVED] HighLatency api (c:80 page)");
    let empty = Labels::new();
    assert_eq!(note(&a[..1], &empty).title(), "[FIRING:1] (HighLatency b:80 api page)");
}

#[test]
fn common_labels_and_annotations() {
    let (a, g) = (alerts(), group());
    let n = note(&a, &g);
    assert_eq!(n.common_labels(), labels([("alertname", "HighLatency"), ("service", "api"), ("severity", "page")]));
    assert_eq!(n.common_annotations(), labels([("runbook", "https://rb/latency")]));
    assert_eq!(n.status(), AlertStatus::Firing);
}

#[test]
fn webhook_payload_is_alertmanagers_version_4() {
    let (a, g) = (alerts(), group());
    let alert_json = |inst: &str, status: &str, summary: &str, ends: &str| {
        json!({
            "status": status,
            "labels": {"alertname": "HighLatency", "instance": inst, "service": "api", "severity": "page"},
            "annotations": {"runbook": "https://rb/latency", "summary": summary},
            "startsAt": "2024-01-31T12:00:00Z",
            "endsAt": ends,
            "generatorURL": format!("https://pharos.example/graph?i={inst}"),
            "fingerprint": fp(inst),
        })
    };
    let want = json!({
        "version": "4",
        "groupKey": KEY,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "oncall",
        "groupLabels": {"alertname": "HighLatency", "service": "api"},
        "commonLabels": {"alertname": "HighLatency", "service": "api", "severity": "page"},
        "commonAnnotations": {"runbook": "https://rb/latency"},
        "externalURL": "https://pharos.example",
        "alerts": [
            alert_json("a:80", "firing", "p99 1.5k ms on a", "0001-01-01T00:00:00Z"),
            alert_json("b:80", "firing", "p99 2.5k ms on b", "0001-01-01T00:00:00Z"),
            alert_json("c:80", "resolved", "p99 600 ms on c", "2024-01-31T12:01:30.5Z"),
        ],
    });
    assert_eq!(webhook_payload(&note(&a, &g), 0), want);
}

#[test]
fn webhook_truncation() {
    let (a, g) = (alerts(), group());
    let p = webhook_payload(&note(&a, &g), 2);
    assert_eq!(p["truncatedAlerts"], 1);
    let insts: Vec<&str> =
        p["alerts"].as_array().unwrap().iter().map(|x| x["labels"]["instance"].as_str().unwrap()).collect();
    assert_eq!(insts, vec!["a:80", "b:80"]);
    assert_eq!(webhook_payload(&note(&a, &g), 10)["truncatedAlerts"], 0);
}

#[test]
fn pagerduty_trigger_and_resolve() {
    let (a, g) = (alerts(), group());
    let cfg = PagerdutyConfig {
        routing_key: "RK".into(),
        url: crate::config::DEFAULT_PAGERDUTY_URL.into(),
        severity: None,
        source: None,
        send_resolved: true,
    };
    let dedup = pagerduty_dedup_key(KEY);
    assert_eq!(dedup, format!("{:016x}", xxh3_64(KEY.as_bytes())));
    let ev = pagerduty_event(&note(&a, &g), &cfg);
    let detail = |inst: &str, summary: &str| {
        json!({
            "labels": {"alertname": "HighLatency", "instance": inst, "service": "api", "severity": "page"},
            "annotations": {"runbook": "https://rb/latency", "summary": summary},
            "startsAt": "2024-01-31T12:00:00Z",
        })
    };
    assert_eq!(
        ev,
        json!({
            "routing_key": "RK",
            "event_action": "trigger",
            "dedup_key": dedup,
            "client": "Pharos",
            "client_url": "https://pharos.example",
            "payload": {
                "summary": "[FIRING:2] HighLatency api (page)",
                "source": "pharos.example",
                // `page` is not a PagerDuty severity: the default.
                "severity": "error",
                "custom_details": {
                    "num_firing": 2,
                    "num_resolved": 1,
                    "firing": [detail("a:80", "p99 1.5k ms on a"), detail("b:80", "p99 2.5k ms on b")],
                    "resolved": [detail("c:80", "p99 600 ms on c")],
                },
            },
        })
    );
    let resolved: Vec<Alert> = a.iter().map(|x| Alert { ends_at: Some(T0 + 1), ..x.clone() }).collect();
    assert_eq!(
        pagerduty_event(&note(&resolved, &g), &cfg),
        json!({"routing_key": "RK", "event_action": "resolve", "dedup_key": dedup, "client": "Pharos",
               "client_url": "https://pharos.example"})
    );
    // Configured severity and source win; a common `severity` label that PagerDuty knows is used otherwise.
    let cfg2 = PagerdutyConfig { severity: Some("critical".into()), source: Some("api-cluster".into()), ..cfg.clone() };
    let ev = pagerduty_event(&note(&a, &g), &cfg2);
    assert_eq!((&ev["payload"]["severity"], &ev["payload"]["source"]), (&json!("critical"), &json!("api-cluster")));
    let warn: Vec<Alert> = a
        .iter()
        .map(|x| {
            let mut x = x.clone();
            x.labels.insert("severity".into(), "warning".into());
            x
        })
        .collect();
    assert_eq!(pagerduty_event(&note(&warn, &g), &cfg)["payload"]["severity"], "warning");
}

#[test]
fn pagerduty_summary_is_capped() {
    let many: Vec<Alert> = (0..300)
        .map(|i| {
            let mut a = alert(&format!("h{i}"), None, "x");
            a.labels.insert("path".into(), "/very/long/path/segment".repeat(3));
            a
        })
        .collect();
    let g: Labels = labels([("alertname", "HighLatency".repeat(200))]);
    let n = Notification { receiver: "r", group_key: "k", group_labels: &g, alerts: &many, external_url: "" };
    let s = pagerduty_event(
        &n,
        &PagerdutyConfig {
            routing_key: "k".into(),
            url: String::new(),
            severity: None,
            source: None,
            send_resolved: true,
        },
    )["payload"]["summary"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.chars().count(), PAGERDUTY_SUMMARY_MAX);
    assert!(s.ends_with('…'));
}

#[test]
fn sms_is_a_twilio_form() {
    let (a, g) = (alerts(), group());
    let cfg = SmsConfig {
        url: "https://api.twilio.com/".into(),
        account_sid: "AC123".into(),
        auth_token: "tok".into(),
        from: "+15550001".into(),
        to: "+15550002".into(),
        send_resolved: false,
    };
    let r = sms_request(&note(&a, &g), &cfg);
    assert_eq!(r.url, "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json");
    assert_eq!((r.account_sid.as_str(), r.auth_token.as_str()), ("AC123", "tok"));
    assert_eq!(
        r.form,
        vec![
            ("From".to_string(), "+15550001".to_string()),
            ("To".to_string(), "+15550002".to_string()),
            (
                "Body".to_string(),
                "[FIRING:2] HighLatency api (page)\n- p99 1.5k ms on a\n- p99 2.5k ms on b\n- [resolved] p99 600 ms on c".to_string()
            ),
        ]
    );
}

#[test]
fn sms_bodies_stay_under_twilios_limit() {
    let many: Vec<Alert> =
        (0..500).map(|i| alert(&format!("host-{i:03}"), None, &format!("host {i} é slow"))).collect();
    let g = group();
    let body = sms_body(&note(&many, &g));
    assert_eq!(body.chars().count(), SMS_MAX_CHARS);
    assert!(body.starts_with("[FIRING:500] HighLatency api (page)\n- host 0 é slow\n"), "{body}");
    assert!(body.ends_with('…'));
    // Without a summary: the labels that are not group labels, on one line.
    let mut a = alert("x", None, "");
    a.annotations.clear();
    let one = [a];
    assert_eq!(sms_body(&note(&one, &g)), "[FIRING:1] HighLatency api (x page)\n- {instance=\"x\", severity=\"page\"}");
}

#[test]
fn email_subject_and_body() {
    let (a, g) = (alerts(), group());
    let cfg = EmailConfig {
        to: "team@example.com".into(),
        from: "pharos@example.com".into(),
        smarthost: "smtp.example.com:587".into(),
        auth_username: Some("u".into()),
        auth_password: None,
        require_tls: None,
        tls_config: None,
        send_resolved: true,
    };
    let m = email_message(&note(&a[..], &g), &cfg);
    assert_eq!(m.subject, "[FIRING:2] HighLatency api (page)");
    assert_eq!(
        (m.from.as_str(), m.to.as_str(), m.smarthost.as_str(), m.require_tls),
        ("pharos@example.com", "team@example.com", "smtp.example.com:587", true)
    );
    let want = "\
2 firing, 1 resolved for group {alertname=\"HighLatency\", service=\"api\"} (receiver oncall).

[FIRING] HighLatency
Labels:
  alertname = HighLatency
  instance = a:80
  service = api
  severity = page
Annotations:
  runbook = https://rb/latency
  summary = p99 1.5k ms on a
Started: 2024-01-31T12:00:00Z
Source: https://pharos.example/graph?i=a:80

[FIRING] HighLatency
Labels:
  alertname = HighLatency
  instance = b:80
  service = api
  severity = page
Annotations:
  runbook = https://rb/latency
  summary = p99 2.5k ms on b
Started: 2024-01-31T12:00:00Z
Source: https://pharos.example/graph?i=b:80

[RESOLVED] HighLatency
Labels:
  alertname = HighLatency
  instance = c:80
  service = api
  severity = page
Annotations:
  runbook = https://rb/latency
  summary = p99 600 ms on c
Started: 2024-01-31T12:00:00Z
Ended: 2024-01-31T12:01:30.5Z
Source: https://pharos.example/graph?i=c:80

View alerts: https://pharos.example
";
    assert_eq!(m.body, want);
}

#[test]
fn alertmanager_v2_postable_alerts() {
    let a = alerts();
    let got = alertmanager_v2_alerts(&a[1..], T0 + 60_000, 240_000);
    let one = |inst: &str, summary: &str, ends: &str| {
        json!({
            "labels": {"alertname": "HighLatency", "instance": inst, "service": "api", "severity": "page"},
            "annotations": {"runbook": "https://rb/latency", "summary": summary},
            "startsAt": "2024-01-31T12:00:00Z",
            "endsAt": ends,
            "generatorURL": format!("https://pharos.example/graph?i={inst}"),
        })
    };
    assert_eq!(
        got,
        json!([
            one("a:80", "p99 1.5k ms on a", "2024-01-31T12:05:00Z"),
            one("c:80", "p99 600 ms on c", "2024-01-31T12:01:30.5Z"),
        ])
    );
}

#[test]
fn notification_keys_are_stable_and_order_free() {
    let (a, g) = (alerts(), group());
    let k = notification_key(&note(&a, &g));
    let mut rev = a.clone();
    rev.reverse();
    assert_eq!(notification_key(&note(&rev, &g)), k);
    assert!(k.starts_with(&format!("oncall/{:016x}/", xxh3_64(KEY.as_bytes()))), "{k}");
    assert_eq!(k.len(), "oncall/".len() + 16 + 1 + 16);
    // A status change is a different notification.
    let mut changed = a.clone();
    changed[0].ends_at = Some(T0 + 5);
    assert_ne!(notification_key(&note(&changed, &g)), k);
}

#[test]
fn deliveries_honour_send_resolved() {
    let (a, g) = (alerts(), group());
    let receiver = Receiver {
        name: "oncall".into(),
        webhook_configs: vec![
            WebhookConfig { url: "https://h/1".into(), send_resolved: true, max_alerts: 0, http_config: None },
            WebhookConfig { url: "https://h/2".into(), send_resolved: false, max_alerts: 0, http_config: None },
        ],
        alertmanager_configs: vec![AlertmanagerConfig { url: "http://am:9093/".into(), http_config: None }],
        ..Default::default()
    };
    let all: Vec<String> = receiver.integrations().into_iter().map(|i| i.id).collect();
    assert_eq!(all, vec!["webhook/0", "webhook/1", "alertmanager/0"]);
    let summary = |d: &[(String, Delivery)]| -> Vec<String> {
        d.iter()
            .map(|(id, x)| match x {
                Delivery::Webhook { url, body, .. } => {
                    format!("{id} {url} {} {}", body["status"], body["alerts"].as_array().unwrap().len())
                }
                Delivery::Alertmanager { url, body, .. } => format!("{id} {url} {}", body.as_array().unwrap().len()),
                other => format!("{other:?}"),
            })
            .collect()
    };
    let d = deliveries(&receiver, &all, &note(&a, &g), T0, 240_000);
    assert_eq!(
        summary(&d),
        vec![
            "webhook/0 https://h/1 \"firing\" 3",
            "webhook/1 https://h/2 \"firing\" 2",
            "alertmanager/0 http://am:9093/api/v2/alerts 3"
        ]
    );
    // Only the integrations asked for.
    let d = deliveries(&receiver, &["webhook/1".to_string()], &note(&a, &g), T0, 240_000);
    assert_eq!(summary(&d), vec!["webhook/1 https://h/2 \"firing\" 2"]);
    // All resolved: the integration without send_resolved gets nothing.
    let resolved: Vec<Alert> = a.iter().map(|x| Alert { ends_at: Some(T0 + 1), ..x.clone() }).collect();
    let d = deliveries(&receiver, &all, &note(&resolved, &g), T0, 240_000);
    assert_eq!(
        summary(&d),
        vec!["webhook/0 https://h/1 \"resolved\" 3", "alertmanager/0 http://am:9093/api/v2/alerts 3"]
    );
    assert!(deliveries(&receiver, &all, &note(&[], &g), T0, 0).is_empty());
}
