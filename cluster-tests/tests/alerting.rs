//! Alerting end to end on real `pharos` processes: rule files checked and stored (`pharosctl rules`),
//! rules evaluated by the leader of their shard, notifications delivered to real receivers (an HTTP
//! server taking webhooks, PagerDuty events and SMS requests; Debian's aiosmtpd; Debian's
//! prometheus-alertmanager), silences, resolution, a receiver that is down for two minutes, and the
//! alerting shard's leader SIGKILLed while an alert is pending and again between firing and delivery.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cluster_tests::receivers::{Alertmanager, HttpReceiver, SmtpServer};
use cluster_tests::{wait_for, Cluster};

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
    ctl_at(&c.nodes[0].grpc, args)
}

fn ctl_at(grpc: &str, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(cluster_tests::pharos_bin().with_file_name("pharosctl"))
        .args(["--addr", grpc])
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

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn parse_time(v: &serde_json::Value) -> Option<i64> {
    chrono_free_rfc3339(v.as_str()?)
}

/// Milliseconds of an RFC 3339 UTC time as Pharos writes them (`2026-11-25T08:11:00.871Z`).
fn chrono_free_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.trim_end_matches('Z').split_once('T')?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + ms)
}

/// The alert instances a node reports (`GET /api/alerts`).
async fn alerts(c: &Cluster, node: usize) -> Result<Vec<serde_json::Value>> {
    let r = c.http.get(c.nodes[node].url("/api/alerts")).send().await?;
    if r.status() != 200 {
        bail!("/api/alerts: {} {}", r.status(), r.text().await.unwrap_or_default());
    }
    let v: serde_json::Value = r.json().await?;
    Ok(v["alerts"].as_array().cloned().unwrap_or_default())
}

fn find<'a>(list: &'a [serde_json::Value], host: &str, state: &str) -> Option<&'a serde_json::Value> {
    list.iter().find(|a| a["labels"]["host"] == host && a["state"] == state)
}

/// Writes `load,host=H value=V` for each (host, value) every 300 ms through the running nodes in turn,
/// until `stop` is set; `values` can be changed while it runs.
fn writer(
    c: &Cluster,
    values: Arc<std::sync::Mutex<Vec<(String, f64)>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let lines = move |now: i64| -> String {
        values.lock().unwrap().iter().map(|(h, v)| format!("load,host={h} value={v} {now}\n")).collect()
    };
    write_every_300ms(c, lines, stop)
}

/// Writes `lines(now)` every 300 ms through the running nodes in turn until `stop` is set.
fn write_every_300ms(
    c: &Cluster,
    lines: impl Fn(i64) -> String + Send + 'static,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let urls: Vec<String> = c.nodes.iter().map(|n| n.url("/write?precision=ms")).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    tokio::spawn(async move {
        let mut i = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let body = lines(now_ms());
            // A killed node refuses the connection: the next one takes the write.
            for k in 0..urls.len() {
                let url = &urls[(i + k) % urls.len()];
                if matches!(http.post(url).body(body.clone()).send().await, Ok(r) if r.status().is_success()) {
                    break;
                }
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

const LOAD_RULES: &str = r#"groups:
  - name: load
    interval: 1s
    rules:
      - alert: HighLoad
        expr: SELECT last(value) FROM load WHERE time > now() - 10s GROUP BY host HAVING last(value) > 5
        for: FOR
        labels:
          severity: page
        annotations:
          summary: "load of {{ $labels.host }} is {{ $value }}"
      - record: load_max
        expr: SELECT max(value) FROM load WHERE time > now() - 10s GROUP BY host
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_alerts_fire_notify_every_receiver_obey_silences_and_resolve() -> Result<()> {
    let hook = HttpReceiver::start().await?;
    let smtp = SmtpServer::start().await?;
    let am = Alertmanager::start().await?;
    let c = Cluster::start(3, "[alerting]\nretry_max_backoff = \"2s\"\n[auth]\nadmin_token = \"s3cret\"\n").await?;
    let dir = tempfile::TempDir::new()?;
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, LOAD_RULES.replace("FOR", "3s"))?;
    let routing = dir.path().join("routing.yml");
    std::fs::write(
        &routing,
        format!(
            r#"route:
  receiver: everyone
  group_by: [alertname, host]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: everyone
    webhook_configs:
      - url: {hook}
        http_config:
          authorization:
            credentials: h00k-t0ken
      - url: {basic}
        http_config:
          basic_auth: {{username: pharos, password: b4sic}}
    pagerduty_configs:
      - routing_key: R0UT1NG
        url: {pd}
    sms_configs:
      - url: {sms}
        account_sid: AC42
        auth_token: t0k
        from: "+15550000001"
        to: "+15550000002"
        send_resolved: true
    email_configs:
      - to: oncall@example.com
        from: pharos@example.com
        smarthost: {smtp}
        require_tls: false
        send_resolved: true
    alertmanager_configs:
      - url: {am}
      - url: {am_behind_auth}
        http_config:
          authorization: {{credentials: am-t0ken}}
"#,
            hook = hook.url("/hook/team"),
            basic = hook.url("/basic/team"),
            am_behind_auth = hook.url("/am"),
            pd = hook.url("/pagerduty/v2/enqueue"),
            sms = hook.url("/sms"),
            smtp = smtp.addr,
            am = am.url,
        ),
    )?;
    let (rules, routing) = (rules.to_str().unwrap(), routing.to_str().unwrap());

    // Changes need the admin token.
    let (ok, out) = ctl(&c, &["rules", "apply", rules])?;
    assert!(!ok && out.contains("needs a token"), "{out}");
    let (ok, out) = ctl(&c, &["--token", "wrong", "rules", "apply", rules])?;
    assert!(!ok && out.contains("not valid"), "{out}");
    let (ok, out) = ctl(&c, &["--token", "s3cret", "rules", "apply", rules])?;
    assert!(ok, "{out}");
    let (ok, out) = ctl(&c, &["--token", "s3cret", "routing", "apply", routing])?;
    assert!(ok && out.contains("1 receivers"), "{out}");
    // host b is silenced: it fires, but nobody hears of it.
    let (ok, silence_id) = ctl(
        &c,
        &[
            "--token",
            "s3cret",
            "silence",
            "add",
            "host=\"b\"",
            "--duration",
            "1h",
            "--author",
            "test",
            "--comment",
            "maintenance",
        ],
    )?;
    assert!(ok, "{silence_id}");
    let silence_id = silence_id.trim().to_string();
    let (ok, out) = ctl(&c, &["silence", "list"])?;
    assert!(ok && out.contains(&silence_id) && out.contains("active") && out.contains("maintenance"), "{out}");

    let values = Arc::new(std::sync::Mutex::new(vec![("a".to_string(), 10.0), ("b".to_string(), 10.0)]));
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&c, values.clone(), stop.clone());

    // Firing for a, after `for`, reaches every receiver.
    let started = Instant::now();
    let fired = wait_for(Duration::from_secs(30), "a firing webhook notification", || async {
        Ok(hook.of_kind("hook").into_iter().find(|r| r.json()["status"] == "firing"))
    })
    .await?;
    println!("firing notification {:?} after the first write", fired.at - started);
    let body = fired.json();
    assert_eq!(body["version"], "4");
    assert_eq!(body["receiver"], "everyone");
    assert_eq!(body["alerts"][0]["labels"]["host"], "a");
    assert_eq!(body["alerts"][0]["labels"]["severity"], "page");
    assert_eq!(body["alerts"][0]["annotations"]["summary"], "load of a is 10");
    assert!(fired.key.starts_with("everyone/"), "a stable notification key: {:?}", fired.key);
    assert_eq!(fired.authorization, "Bearer h00k-t0ken", "the receiver's http_config credentials");
    for (kind, credentials) in [("basic", "Basic cGhhcm9zOmI0c2lj"), ("alertmanager", "Bearer am-t0ken")] {
        let got = wait_for(Duration::from_secs(20), &format!("a notification to the {kind} receiver"), || async {
            Ok(hook.of_kind(kind).into_iter().next())
        })
        .await?;
        assert_eq!(got.authorization, credentials, "{kind}: http_config credentials (base64 of pharos:b4sic)");
    }
    let list = alerts(&c, 0).await?;
    let a = find(&list, "a", "firing").context("a firing in /api/alerts")?;
    let since = parse_time(&a["activeSince"]).unwrap();
    let fired_at = parse_time(&a["firedAt"]).unwrap();
    assert!(fired_at - since >= 3000, "fired {} ms after becoming pending, for: 3s", fired_at - since);
    assert!(find(&list, "b", "firing").is_some(), "a silence mutes notifications, not the alert: {list:?}");

    let pd = wait_for(Duration::from_secs(20), "a PagerDuty trigger", || async {
        Ok(hook.of_kind("pagerduty").into_iter().find(|r| r.json()["event_action"] == "trigger"))
    })
    .await?;
    assert_eq!(pd.json()["routing_key"], "R0UT1NG");
    let dedup = pd.json()["dedup_key"].as_str().unwrap_or("").to_string();
    assert!(!dedup.is_empty());
    let sms =
        wait_for(Duration::from_secs(20), "an SMS", || async { Ok(hook.of_kind("sms").into_iter().next()) }).await?;
    assert_eq!(sms.path, "/sms/AC42");
    assert!(sms.authorization.starts_with("Basic "), "{}", sms.authorization);
    assert!(sms.body.contains("To=%2B15550000002") && sms.body.contains("HighLoad"), "{}", sms.body);
    let mail = wait_for(Duration::from_secs(20), "an email", || async {
        Ok(smtp.messages().into_iter().find(|m| m.contains("FIRING")))
    })
    .await?;
    let text = mail.replace("=\r\n", "").replace("=\n", "").replace("=3D", "="); // quoted-printable
    assert!(mail.contains("To: oncall@example.com") && mail.contains("Subject: [FIRING:1] HighLoad"), "{mail}");
    assert!(text.contains("host = a") && text.contains("load of a is 10"), "{text}");
    let am_alert = wait_for(Duration::from_secs(20), "the alert in Alertmanager", || async {
        Ok(am.alerts().await?.into_iter().find(|a| a["labels"]["alertname"] == "HighLoad"))
    })
    .await?;
    assert_eq!(am_alert["labels"]["host"], "a");

    // Visible in pharosctl and as ALERTS series; the recording rule wrote its series.
    let (ok, out) = ctl(&c, &["alerts", "--state", "firing"])?;
    assert!(ok && out.contains("HighLoad") && out.contains("host=\"a\""), "{out}");
    let (ok, out) = ctl(&c, &["query", "SELECT count(value) FROM ALERTS WHERE alertstate = 'firing' GROUP BY host; SELECT last(value) FROM load_max GROUP BY host", "--format", "csv"])?;
    assert!(ok && out.contains("ALERTS,host=a") && out.contains("load_max,host=b"), "{out}");

    // Nothing about b while silenced; expiring the silence lets it through.
    assert!(hook.of_kind("hook").iter().all(|r| !r.body.contains("\"host\":\"b\"")), "silenced b was notified");
    let (ok, out) = ctl(&c, &["--token", "s3cret", "silence", "expire", &silence_id])?;
    assert!(ok, "{out}");
    wait_for(Duration::from_secs(20), "b notified once the silence expired", || async {
        Ok(hook.of_kind("hook").into_iter().find(|r| r.body.contains("\"host\":\"b\"")))
    })
    .await?;

    // Resolution notifies the webhook, PagerDuty (resolve, same dedup key) and email.
    values.lock().unwrap()[0].1 = 1.0;
    let resolved = wait_for(Duration::from_secs(30), "a resolved notification", || async {
        Ok(hook.of_kind("hook").into_iter().find(|r| r.json()["status"] == "resolved"))
    })
    .await?;
    assert_eq!(resolved.json()["alerts"][0]["labels"]["host"], "a");
    assert_ne!(resolved.json()["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_ne!(resolved.key, fired.key, "a different notification has a different key");
    let pd_resolve = wait_for(Duration::from_secs(20), "a PagerDuty resolve", || async {
        Ok(hook.of_kind("pagerduty").into_iter().find(|r| r.json()["event_action"] == "resolve"))
    })
    .await?;
    assert_eq!(pd_resolve.json()["dedup_key"], dedup.as_str());
    wait_for(Duration::from_secs(20), "a resolved email", || async {
        Ok(smtp.messages().into_iter().find(|m| m.contains("RESOLVED")))
    })
    .await?;
    // Exactly one firing notification for a's group reached the webhook (no duplicates in steady state).
    let firing_a = hook
        .of_kind("hook")
        .iter()
        .filter(|r| r.json()["status"] == "firing" && r.json()["groupLabels"]["host"] == "a")
        .count();
    assert_eq!(firing_a, 1, "{:?}", hook.of_kind("hook"));
    stop.store(true, Ordering::SeqCst);
    w.await?;
    Ok(())
}

/// Applies LOAD_RULES with `for_` and a routing that sends every alert to one webhook at once
/// (group_wait 0s), then writes host a's load above the threshold until `stop` is set.
fn alert_on_high_load(
    c: &Cluster,
    for_: &str,
    hook_url: &str,
) -> Result<(Arc<AtomicBool>, tokio::task::JoinHandle<()>)> {
    let (stop, w, _) = alert_on_high_load_to(c, for_, &format!("    webhook_configs:\n      - url: {hook_url}\n"))?;
    Ok((stop, w))
}

type Values = Arc<std::sync::Mutex<Vec<(String, f64)>>>;

/// [`alert_on_high_load`] notifying the receiver `hook` whose integrations are `integrations` (YAML, indented
/// as under a receiver).
fn alert_on_high_load_to(
    c: &Cluster,
    for_: &str,
    integrations: &str,
) -> Result<(Arc<AtomicBool>, tokio::task::JoinHandle<()>, Values)> {
    let dir = tempfile::TempDir::new()?;
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, LOAD_RULES.replace("FOR", for_))?;
    let routing = dir.path().join("routing.yml");
    std::fs::write(
        &routing,
        format!(
            "route:\n  receiver: hook\n  group_wait: 0s\n  group_interval: 1m\nreceivers:\n  - name: hook\n{integrations}"
        ),
    )?;
    let (ok, out) = ctl(c, &["rules", "apply", rules.to_str().unwrap()])?;
    assert!(ok, "{out}");
    let (ok, out) = ctl(c, &["routing", "apply", routing.to_str().unwrap()])?;
    assert!(ok, "{out}");
    let values = Arc::new(std::sync::Mutex::new(vec![("a".to_string(), 10.0)]));
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(c, values.clone(), stop.clone());
    Ok((stop, w, values))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t25_a_receiver_down_for_two_minutes_gets_the_notification_when_back() -> Result<()> {
    let hook = HttpReceiver::start().await?;
    hook.set_down(true);
    let c = Cluster::start(3, "[alerting]\nretry_max_backoff = \"5s\"\n").await?;
    let (stop, w) = alert_on_high_load(&c, "0s", &hook.url("/hook/down"))?;
    wait_for(Duration::from_secs(30), "a first refused delivery", || async { Ok((hook.refused() > 0).then_some(())) })
        .await?;
    let down_since = Instant::now();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let refused = hook.refused();
    assert!(refused >= 20, "retried with backoff capped at 5 s over two minutes: {refused} attempts");
    assert!(hook.received().is_empty());
    hook.set_down(false);
    let back = Instant::now();
    let got = wait_for(Duration::from_secs(15), "the notification once the receiver is back", || async {
        Ok(hook.received().into_iter().next())
    })
    .await?;
    println!(
        "receiver down {:?}, {refused} refused attempts; delivered {:?} after it came back",
        back - down_since,
        got.at - back
    );
    assert_eq!(got.json()["status"], "firing");
    stop.store(true, Ordering::SeqCst);
    w.await?;
    Ok(())
}

/// Email to mail servers with certificates from a private CA: over STARTTLS and over implicit TLS (port
/// 465), each verified with `tls_config.ca_file`; a server whose CA the receiver does not name gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_email_over_starttls_and_implicit_tls_verified_with_a_private_ca_and_smtp_auth() -> Result<()> {
    let certs = tempfile::TempDir::new()?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-certs.sh");
    let out = std::process::Command::new(script).arg(certs.path()).arg("smtp").output()?;
    assert!(out.status.success(), "{out:?}");
    let (cert, key, ca) = (certs.path().join("node.crt"), certs.path().join("node.key"), certs.path().join("ca.crt"));
    let starttls = SmtpServer::start_tls(&cert, &key, false, None).await?;
    let implicit = SmtpServer::start_tls(&cert, &key, true, Some(465))
        .await
        .context("implicit TLS is chosen by port 465 (as Alertmanager does): the test binds it, which needs root")?;
    let untrusted = SmtpServer::start_tls(&cert, &key, false, None).await?;
    let authed = SmtpServer::start_tls_auth(&cert, &key, "pharos", "m4il-pass").await?;
    let wrong_password = SmtpServer::start_tls_auth(&cert, &key, "pharos", "another").await?;
    let c = Cluster::start(1, "[alerting]\nretry_max_backoff = \"2s\"\n").await?;
    let email = |to: &str, smarthost: &str, tls: &str| {
        format!("      - to: {to}\n        from: pharos@example.com\n        smarthost: {smarthost}\n{tls}")
    };
    let with_ca = format!("        tls_config: {{ca_file: {}}}\n", ca.display());
    let with_auth = format!("{with_ca}        auth_username: pharos\n        auth_password: m4il-pass\n");
    let integrations = format!(
        "    email_configs:\n{}{}{}{}{}",
        email("starttls@example.com", &starttls.addr, &with_ca),
        email("implicit@example.com", &implicit.addr, &with_ca),
        email("untrusted@example.com", &untrusted.addr, ""),
        email("authed@example.com", &authed.addr, &with_auth),
        email("refused@example.com", &wrong_password.addr, &with_auth),
    );
    let (stop, w, _) = alert_on_high_load_to(&c, "0s", &integrations)?;
    for (server, what) in [(&starttls, "STARTTLS"), (&implicit, "implicit TLS"), (&authed, "STARTTLS with AUTH")] {
        let got = wait_for(Duration::from_secs(30), &format!("an email over {what}"), || async {
            Ok(server.messages().into_iter().find(|m| m.contains("FIRING")))
        })
        .await?;
        assert!(got.contains("HighLoad"), "{got}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(untrusted.messages().is_empty(), "a certificate from an unknown CA is refused");
    assert!(wrong_password.messages().is_empty(), "a server that refuses the credentials gets nothing");
    stop.store(true, Ordering::SeqCst);
    w.await?;
    Ok(())
}

/// A rule group's alert actor follows its shard when a drain moves the shard's replica and leadership off
/// the node evaluating it: the firing state moves with the Raft state (same start, no resolve sent), and the
/// new leader evaluates from then on (a new value shows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_an_alert_group_follows_its_shard_through_a_drain() -> Result<()> {
    let hook = HttpReceiver::start().await?;
    let config = "shards = 4\n[alerting]\nretry_max_backoff = \"1s\"\n";
    let mut c = Cluster::start(3, config).await?;
    c.join(1, Some(4), config).await?;
    let (stop, w, values) =
        alert_on_high_load_to(&c, "1s", &format!("    webhook_configs:\n      - url: {}\n", hook.url("/hook/drain")))?;
    wait_for(Duration::from_secs(30), "a firing notification", || async {
        Ok(hook.received().into_iter().find(|r| r.json()["status"] == "firing"))
    })
    .await?;
    let firing = wait_for(Duration::from_secs(10), "the firing alert", || async {
        Ok(alerts(&c, 0).await?.into_iter().find(|a| a["state"] == "firing"))
    })
    .await?;
    let (shard, leader) = alert_leader(&c).await?;
    let via = if leader == 1 { 2 } else { 1 };
    println!("alert group on shard {shard}, led by node {leader}; draining it");
    let out = c.pharosctl(via, &["node", "drain", &leader.to_string()])?;
    assert!(out.contains("finished"), "{out}");
    let (shard_after, leader_after) = alert_leader(&c).await?;
    assert_eq!(shard_after, shard);
    assert_ne!(leader_after, leader, "the drained node leads nothing");
    let st = c.status(via).await?;
    let replicas = &st.shards.iter().find(|s| s.shard == shard).context("the shard")?.replicas;
    assert!(!replicas.contains(&leader), "the drained node holds no replica of shard {shard}: {replicas:?}");
    // The same alert, not a new one: the state moved with the shard.
    let i = (via - 1) as usize;
    let after = alerts(&c, i).await?.into_iter().find(|a| a["state"] == "firing").context("still firing")?;
    assert_eq!(after["activeSince"], firing["activeSince"]);
    assert_eq!(after["firedAt"], firing["firedAt"]);
    // The new leader evaluates: a new value shows.
    values.lock().unwrap()[0].1 = 20.0;
    wait_for(Duration::from_secs(20), "the new leader's evaluation", || async {
        Ok(alerts(&c, i).await?.into_iter().find(|a| a["state"] == "firing" && a["value"] == 20.0))
    })
    .await?;
    assert!(hook.received().iter().all(|r| r.json()["status"] == "firing"), "no resolve was sent across the move");
    stop.store(true, Ordering::SeqCst);
    w.await?;
    Ok(())
}

/// The node leading the shard that evaluates the `load` group (from a node that answers).
async fn alert_leader(c: &Cluster) -> Result<(u32, u64)> {
    wait_for(Duration::from_secs(30), "an alert instance naming its shard and a leader", || async {
        for (i, n) in c.nodes.iter().enumerate() {
            if n.pid().is_none() {
                continue;
            }
            let Ok(list) = alerts(c, i).await else { continue };
            let Some(shard) = list.first().and_then(|a| a["shard"].as_u64()) else { continue };
            let Ok(st) = c.status(n.id).await else { continue };
            if let Some(s) = st.shards.iter().find(|s| s.shard as u64 == shard && s.leader != 0) {
                return Ok(Some((shard as u32, s.leader)));
            }
        }
        Ok(None)
    })
    .await
}

fn running(c: &Cluster) -> usize {
    c.nodes.iter().position(|n| n.pid().is_some()).expect("a running node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_alert_state_and_notifications_survive_sigkill_of_the_shard_leader() -> Result<()> {
    let hook = HttpReceiver::start().await?;
    hook.set_down(true);
    let mut c = Cluster::start(3, "[alerting]\nretry_max_backoff = \"1s\"\n").await?;
    let (stop, w) = alert_on_high_load(&c, "8s", &hook.url("/hook/failover"))?;

    // 1. SIGKILL the leader while the alert is pending: `for` keeps counting from the same start.
    let pending = wait_for(Duration::from_secs(30), "a pending alert", || async {
        Ok(alerts(&c, 0).await?.into_iter().find(|a| a["state"] == "pending"))
    })
    .await?;
    let since = parse_time(&pending["activeSince"]).unwrap();
    let (shard, leader) = alert_leader(&c).await?;
    println!("alert group on shard {shard}, led by node {leader}; SIGKILL it while pending");
    c.node(leader).kill();
    let firing = wait_for(Duration::from_secs(40), "the alert firing under the new leader", || async {
        let i = running(&c);
        Ok(alerts(&c, i).await.ok().and_then(|l| l.into_iter().find(|a| a["state"] == "firing")))
    })
    .await?;
    let since_after = parse_time(&firing["activeSince"]).unwrap();
    let fired_at = parse_time(&firing["firedAt"]).unwrap();
    println!("pending since {since}, fired at +{} ms after a failover", fired_at - since);
    assert_eq!(since_after, since, "the new leader kept the pending start");
    assert!(fired_at - since >= 8000 && fired_at - since < 8000 + 6000, "fired {} ms after pending", fired_at - since);

    // 2. Firing is committed, the receiver is down: SIGKILL the leader that holds the undelivered
    // notification; the next leader must deliver it once the receiver is back.
    c.node(leader).start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    wait_for(Duration::from_secs(20), "delivery attempts refused by the receiver", || async {
        Ok((hook.refused() > 0).then_some(()))
    })
    .await?;
    let (_, leader2) = alert_leader(&c).await?;
    println!("SIGKILL node {leader2}, the leader now retrying the undelivered notification");
    c.node(leader2).kill();
    hook.set_down(false);
    let killed = Instant::now();
    let got = wait_for(Duration::from_secs(40), "the notification from the next leader", || async {
        Ok(hook.received().into_iter().next())
    })
    .await?;
    println!("delivered {:?} after the SIGKILL", got.at - killed);
    let body = got.json();
    assert_eq!(body["status"], "firing");
    assert_eq!(body["alerts"][0]["labels"]["host"], "a");
    assert_eq!(parse_time(&body["alerts"][0]["startsAt"]), Some(fired_at), "the same alert, same start: {body}");
    stop.store(true, Ordering::SeqCst);
    w.await?;
    Ok(())
}

/// A queue exporter that can be stopped (its port closes) and started again on the same address.
struct Exporter {
    addr: std::net::SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Exporter {
    async fn start(addr: Option<std::net::SocketAddr>) -> Result<Exporter> {
        let listener = tokio::net::TcpListener::bind(addr.unwrap_or(([127, 0, 0, 1], 0).into())).await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(|| async { "# TYPE queue_depth gauge\nqueue_depth{queue=\"jobs\"} 3\n" }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Exporter { addr, server: Some(server) })
    }

    fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

/// Waits until a count query's answer reaches 3 (the target was scraped a few times).
async fn wait_scraped(c: &Cluster, query: &str) -> Result<()> {
    let q = [("q", query), ("db", "pharos")];
    wait_for(Duration::from_secs(20), "scraped samples", || async {
        let r: serde_json::Value = c.http.get(c.nodes[0].url("/query")).query(&q).send().await?.json().await?;
        Ok(r["results"][0]["series"][0]["values"][0][1].as_u64().filter(|n| *n >= 3))
    })
    .await
    .map(|_| ())
}

/// The first notification with `status` (waiting up to 30 s, and printing how long it took).
async fn notified(hook: &HttpReceiver, status: &str, what: &str) -> Result<cluster_tests::receivers::Received> {
    let since = Instant::now();
    let got = wait_for(Duration::from_secs(30), what, || async {
        Ok(hook.received().into_iter().find(|r| r.json()["status"] == status))
    })
    .await?;
    println!("{what} {:?} after the change", since.elapsed());
    Ok(got)
}

/// `no_data: nodata`: a scrape target that stops makes its series go quiet, and the rule (whose condition
/// never held) notifies a no-data alert for exactly that series, labelled `alertstate="nodata"` (also in
/// `ALERTS`); when the target is back, it resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_a_stopped_scrape_target_raises_a_no_data_alert_that_resolves_when_it_is_back() -> Result<()> {
    let hook = HttpReceiver::start().await?;
    let mut exporter = Exporter::start(None).await?;
    let c = Cluster::start(1, "[alerting]\nretry_max_backoff = \"1s\"\n").await?;
    let dir = tempfile::TempDir::new()?;
    let (scrape, rules, routing) = (dir.path().join("s.yml"), dir.path().join("r.yml"), dir.path().join("o.yml"));
    std::fs::write(
        &scrape,
        format!(
            "scrape_configs:\n  - job_name: queues\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{}']\n",
            exporter.addr
        ),
    )?;
    std::fs::write(
        &rules,
        r#"groups:
  - name: queues
    interval: 1s
    rules:
      - alert: QueueBacklog
        expr: SELECT last(value) FROM queue_depth WHERE time > now() - 3s GROUP BY instance, queue HAVING last(value) > 100
        no_data: nodata
        no_data_for: 2s
        annotations:
          summary: "{{ $labels.queue }} on {{ $labels.instance }}: no data"
"#,
    )?;
    std::fs::write(
        &routing,
        format!(
            "route:\n  receiver: hook\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
            hook.url("/hook/nodata")
        ),
    )?;
    for (what, file) in [("scrape", &scrape), ("rules", &rules), ("routing", &routing)] {
        let (ok, out) = ctl(&c, &[what, "apply", file.to_str().unwrap()])?;
        assert!(ok, "{what}: {out}");
    }
    // The target is scraped and healthy: its series has data, the condition does not hold, nothing fires.
    wait_scraped(&c, "SELECT count(value) FROM queue_depth").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(hook.received().is_empty(), "nothing fires while data flows: {:?}", hook.received());

    // The target stops: within the 3 s window, then 2 s of no_data_for, a nodata alert for its series.
    exporter.stop();
    let fired = notified(&hook, "firing", "a no-data notification").await?;
    let alert = &fired.json()["alerts"][0];
    assert_eq!(alert["labels"]["alertstate"], "nodata", "{alert}");
    assert_eq!(alert["labels"]["alertname"], "QueueBacklog");
    assert_eq!(alert["labels"]["queue"], "jobs");
    assert_eq!(alert["labels"]["instance"], exporter.addr.to_string());
    assert!(alert["annotations"]["summary"].as_str().unwrap_or("").contains("no data"), "{alert}");
    let listed = alerts(&c, 0).await?;
    assert!(listed.iter().any(|a| a["state"] == "nodata"), "{listed:?}");
    let q = [("q", "SELECT count(value) FROM \"ALERTS\" WHERE alertstate = 'nodata'"), ("db", "pharos")];
    wait_for(Duration::from_secs(10), "ALERTS{alertstate=\"nodata\"}", || async {
        let r: serde_json::Value = c.http.get(c.nodes[0].url("/query")).query(&q).send().await?.json().await?;
        Ok(r["results"][0]["series"][0]["values"][0][1].as_u64().filter(|n| *n >= 1))
    })
    .await?;

    // Back on the same address: data returns, the no-data alert resolves.
    let _back = Exporter::start(Some(exporter.addr)).await?;
    notified(&hook, "resolved", "the no-data alert's resolution").await?;
    Ok(())
}

/// An `absent:` rule: fires when its query returns no row at all (the scrape target stopped, so its job has
/// no samples in the window), labelled from the WHERE's tag equality, and resolves when samples return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t65_an_absent_rule_fires_when_a_job_has_no_samples_and_resolves_when_they_return() -> Result<()> {
    let hook = HttpReceiver::start().await?;
    let mut exporter = Exporter::start(None).await?;
    let c = Cluster::start(1, "[alerting]\nretry_max_backoff = \"1s\"\n").await?;
    let dir = tempfile::TempDir::new()?;
    let files = [
        (
            "scrape",
            format!(
                "scrape_configs:\n  - job_name: queues\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{}']\n",
                exporter.addr
            ),
        ),
        (
            "rules",
            "groups:\n  - name: presence\n    interval: 1s\n    rules:\n      - alert: QueuesGone\n        absent: SELECT \
             count(value) FROM queue_depth WHERE job = 'queues' AND time > now() - 3s\n        labels:\n          \
             severity: page\n"
                .to_string(),
        ),
        (
            "routing",
            format!(
                "route:\n  receiver: hook\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: hook\n    \
                 webhook_configs:\n      - url: {}\n",
                hook.url("/hook/absent")
            ),
        ),
    ];
    let apply = |what: &str, text: &str| -> Result<()> {
        let f = dir.path().join(format!("{what}.yml"));
        std::fs::write(&f, text)?;
        let (ok, out) = ctl(&c, &[what, "apply", f.to_str().unwrap()])?;
        assert!(ok, "{what}: {out}");
        Ok(())
    };
    // Rules last, once the job has samples (before, it has none: the rule would rightly fire).
    apply(files[0].0, &files[0].1)?;
    apply(files[2].0, &files[2].1)?;
    wait_scraped(&c, "SELECT count(value) FROM queue_depth WHERE job = 'queues'").await?;
    apply(files[1].0, &files[1].1)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(hook.received().is_empty(), "nothing fires while the job has samples: {:?}", hook.received());

    exporter.stop();
    let fired = notified(&hook, "firing", "the absent alert").await?;
    let alert = &fired.json()["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "QueuesGone", "{alert}");
    assert_eq!(alert["labels"]["job"], "queues", "{alert}");
    assert_eq!(alert["labels"]["severity"], "page", "{alert}");

    let _back = Exporter::start(Some(exporter.addr)).await?;
    notified(&hook, "resolved", "the absent alert's resolution").await?;
    Ok(())
}

/// Notification grouping across the cluster: two rule groups the ring places on different shards raise
/// alerts sharing the label the route groups by; one notification carries both, one per group_interval,
/// and so it stays when the leader of the shard that dispatches the group is SIGKILLed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_alerts_of_rule_groups_on_different_shards_share_one_notification_through_a_leader_kill() -> Result<()> {
    let router = pharos_node::routing::Router::new(16);
    let names: Vec<String> = (0..64).map(|i| format!("team-{i}")).collect();
    let a = names[0].clone();
    let b = names.iter().find(|n| router.shard_of_name(n) != router.shard_of_name(&a)).unwrap().clone();
    println!("rule group {a} on shard {}, {b} on shard {}", router.shard_of_name(&a), router.shard_of_name(&b));
    let group = |name: &str, alert: &str, m: &str| {
        format!(
            "  - name: {name}\n    interval: 1s\n    rules:\n      - alert: {alert}\n        expr: SELECT last(v) FROM {m} \
             WHERE time > now() - 10s GROUP BY host HAVING last(v) > 5\n        labels:\n          cluster: east\n"
        )
    };
    let rules = format!("groups:\n{}{}", group(&a, "DiskFull", "disk"), group(&b, "QueueStuck", "queue"));
    let hook = HttpReceiver::start().await?;
    let routing = format!(
        "route:\n  receiver: hook\n  group_by: [cluster]\n  group_wait: 4s\n  group_interval: 20s\n  repeat_interval: 1h\n\
         receivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
        hook.url("/hook/grouped")
    );
    let mut c = Cluster::start(3, "[alerting]\nretry_max_backoff = \"1s\"\n").await?;
    let dir = tempfile::TempDir::new()?;
    for (what, text) in [("rules", &rules), ("routing", &routing)] {
        let f = dir.path().join(format!("{what}.yml"));
        std::fs::write(&f, text)?;
        let (ok, out) = ctl(&c, &[what, "apply", f.to_str().unwrap()])?;
        assert!(ok, "{out}");
    }
    // disk and queue of host a high, written every 300 ms through the running nodes; host b joins later.
    let hosts = Arc::new(std::sync::Mutex::new(vec!["a".to_string()]));
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let hosts = hosts.clone();
        let lines = move |now: i64| -> String {
            hosts
                .lock()
                .unwrap()
                .iter()
                .map(|h| format!("disk,host={h} v=9 {now}\nqueue,host={h} v=9 {now}\n"))
                .collect()
        };
        write_every_300ms(&c, lines, stop.clone())
    };
    let firing = |hook: &HttpReceiver| -> Vec<(Instant, serde_json::Value)> {
        hook.received().iter().map(|r| (r.at, r.json())).filter(|(_, j)| j["status"] == "firing").collect()
    };
    let names_in = |n: &serde_json::Value| -> Vec<String> {
        let mut v: Vec<String> = n["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                format!(
                    "{}/{}",
                    a["labels"]["alertname"].as_str().unwrap_or(""),
                    a["labels"]["host"].as_str().unwrap_or("")
                )
            })
            .collect();
        v.sort();
        v
    };

    // 1. One notification with both alerts, from two shards' rule groups.
    let (_, first) =
        wait_for(Duration::from_secs(60), "the first notification", || async { Ok(firing(&hook).into_iter().next()) })
            .await?;
    assert_eq!(names_in(&first), ["DiskFull/a", "QueueStuck/a"], "{first}");
    assert_eq!(first["groupLabels"]["cluster"], "east", "{first}");
    let group_key = first["groupKey"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(firing(&hook).len(), 1, "one notification for the group: {:?}", firing(&hook));

    // 2. SIGKILL the leader of the shard that dispatches the group (its log is committed: the delivery was
    // acknowledged seconds ago); new alerts in the group are notified by the next leader, still no sooner
    // than one group_interval after the last notification.
    let owner = pharos_node::alerting::view::owner(&router, &group_key);
    let st = c.status(1).await?;
    let leader = st.shards.iter().find(|s| s.shard == owner).map(|s| s.leader).unwrap();
    println!("group {group_key} dispatched by shard {owner}, led by node {leader}: SIGKILL it");
    c.node(leader).kill();
    hosts.lock().unwrap().push("b".into());
    let all4 = ["DiskFull/a", "DiskFull/b", "QueueStuck/a", "QueueStuck/b"];
    wait_for(Duration::from_secs(70), "a notification with host b", || async {
        Ok(firing(&hook).into_iter().find(|(_, n)| names_in(n) == all4))
    })
    .await?;
    // Nothing changes after that: no further notification for a group_interval.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let all = firing(&hook);
    for pair in all.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= Duration::from_millis(19_500), "notifications {gap:?} apart, under group_interval: {all:?}");
    }
    assert!(all.iter().all(|(_, n)| n["groupKey"] == first["groupKey"]), "{all:?}");
    assert_eq!(names_in(&all.last().unwrap().1), all4, "{all:?}");
    assert!(all.len() <= 3, "{all:?}");
    stop.store(true, Ordering::SeqCst);
    w.await?;
    Ok(())
}
