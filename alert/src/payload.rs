//! What receivers are sent: pure builders of request bodies from a group's alerts.
//!
//! | receiver        | builder                      | shape                                                   |
//! |-----------------|------------------------------|---------------------------------------------------------|
//! | webhook         | [`webhook_payload`]          | Alertmanager webhook JSON, version "4"                  |
//! | pagerduty       | [`pagerduty_event`]          | Events API v2 JSON (trigger or resolve)                 |
//! | sms             | [`sms_request`]              | Twilio Messages API form (From, To, Body ≤ 1600 chars)  |
//! | email           | [`email_message`]            | subject and plain-text body                             |
//! | alertmanager    | [`alertmanager_v2_alerts`]   | `POST /api/v2/alerts` JSON array                        |
//!
//! [`delivery`] builds the request of one integration of a receiver, honouring `send_resolved` (resolved
//! alerts are left out for integrations that don't want them; nothing is sent if nothing is left);
//! [`deliveries`] those of the integrations a group tick chose.
//! [`notification_key`] is the stable identity of one notification for the outbox and for receivers that
//! drop duplicates. Alerts appear sorted by labels, so equal inputs give equal bytes.

use serde_json::{json, Map, Value};
use xxhash_rust::xxh3::xxh3_64;

use crate::alert::{Alert, AlertStatus};
use crate::config::{EmailConfig, Integration, IntegrationConfig, PagerdutyConfig, Receiver, SmsConfig};
use crate::labels::{format_labels, Labels};
use crate::time::{rfc3339, ZERO_TIME};

/// PagerDuty's severities.
pub const PAGERDUTY_SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
/// PagerDuty caps `payload.summary` at 1024 characters.
pub const PAGERDUTY_SUMMARY_MAX: usize = 1024;
/// Twilio's limit for one message body.
pub const SMS_MAX_CHARS: usize = 1600;

/// One notification: a group's alerts for one receiver.
#[derive(Debug, Clone, Copy)]
pub struct Notification<'a> {
    pub receiver: &'a str,
    pub group_key: &'a str,
    pub group_labels: &'a Labels,
    pub alerts: &'a [Alert],
    /// Where people look at alerts (the node's external URL).
    pub external_url: &'a str,
}

impl Notification<'_> {
    /// Firing if any alert fires.
    pub fn status(&self) -> AlertStatus {
        if self.alerts.iter().any(Alert::is_firing) {
            AlertStatus::Firing
        } else {
            AlertStatus::Resolved
        }
    }

    /// The alerts sorted by labels.
    pub fn sorted(&self) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self.alerts.iter().collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    pub fn firing(&self) -> Vec<&Alert> {
        self.sorted().into_iter().filter(|a| a.is_firing()).collect()
    }

    pub fn resolved(&self) -> Vec<&Alert> {
        self.sorted().into_iter().filter(|a| !a.is_firing()).collect()
    }

    /// Labels with the same value in every alert.
    pub fn common_labels(&self) -> Labels {
        common(self.alerts.iter().map(|a| &a.labels))
    }

    /// Annotations with the same value in every alert.
    pub fn common_annotations(&self) -> Labels {
        common(self.alerts.iter().map(|a| &a.annotations))
    }

    /// Alertmanager's default title: `[FIRING:2] HighLatency api (page team-a)`: status and count, the
    /// group labels' values, then the other common labels' values in parentheses.
    pub fn title(&self) -> String {
        let mut s = match self.status() {
            AlertStatus::Firing => format!("[FIRING:{}]", self.alerts.iter().filter(|a| a.is_firing()).count()),
            AlertStatus::Resolved => "[RESOLVED]".to_string(),
        };
        for v in self.group_labels.values() {
            s.push(' ');
            s.push_str(v);
        }
        let common = self.common_labels();
        let rest: Vec<&str> =
            common.iter().filter(|(k, _)| !self.group_labels.contains_key(*k)).map(|(_, v)| v.as_str()).collect();
        if !rest.is_empty() {
            s.push_str(&format!(" ({})", rest.join(" ")));
        }
        s
    }

    /// A copy without resolved alerts (for integrations without `send_resolved`).
    fn firing_only(&self) -> Vec<Alert> {
        self.alerts.iter().filter(|a| a.is_firing()).cloned().collect()
    }
}

fn common<'a>(mut sets: impl Iterator<Item = &'a Labels>) -> Labels {
    let Some(first) = sets.next() else { return Labels::new() };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(l.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>())
}

/// One alert as Alertmanager's webhook writes it.
fn webhook_alert(a: &Alert) -> Value {
    json!({
        "status": a.status().as_str(),
        "labels": labels_json(&a.labels),
        "annotations": labels_json(&a.annotations),
        "startsAt": rfc3339(a.starts_at),
        "endsAt": a.ends_at.map(rfc3339).unwrap_or_else(|| ZERO_TIME.to_string()),
        "generatorURL": a.generator_url,
        "fingerprint": format!("{:016x}", a.fingerprint()),
    })
}

/// Alertmanager's webhook payload (version "4"); with `max_alerts` > 0 only that many alerts are listed
/// and the rest counted in `truncatedAlerts` (status and common labels still cover all).
pub fn webhook_payload(n: &Notification, max_alerts: usize) -> Value {
    let sorted = n.sorted();
    let keep = if max_alerts == 0 { sorted.len() } else { max_alerts.min(sorted.len()) };
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": sorted.len() - keep,
        "status": n.status().as_str(),
        "receiver": n.receiver,
        "groupLabels": labels_json(n.group_labels),
        "commonLabels": labels_json(&n.common_labels()),
        "commonAnnotations": labels_json(&n.common_annotations()),
        "externalURL": n.external_url,
        "alerts": sorted[..keep].iter().map(|a| webhook_alert(a)).collect::<Vec<_>>(),
    })
}

/// Alertmanager API v2 postable alerts (`POST {url}/api/v2/alerts`). A firing alert gets
/// `endsAt = now + valid_for_ms`, after which Alertmanager resolves it unless it is sent again (as
/// Prometheus does); a resolved one its resolution time.
pub fn alertmanager_v2_alerts(alerts: &[Alert], now_ms: i64, valid_for_ms: i64) -> Value {
    let mut sorted: Vec<&Alert> = alerts.iter().collect();
    sorted.sort_by(|a, b| a.labels.cmp(&b.labels));
    Value::Array(
        sorted
            .into_iter()
            .map(|a| {
                json!({
                    "labels": labels_json(&a.labels),
                    "annotations": labels_json(&a.annotations),
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": rfc3339(a.ends_at.unwrap_or(now_ms.saturating_add(valid_for_ms))),
                    "generatorURL": a.generator_url,
                })
            })
            .collect(),
    )
}

/// The PagerDuty `dedup_key` of a group: the same for its trigger and resolve events, so PagerDuty
/// resolves the incident it opened.
pub fn pagerduty_dedup_key(group_key: &str) -> String {
    format!("{:016x}", xxh3_64(group_key.as_bytes()))
}

fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then_some(host)
}

fn details(alerts: &[&Alert]) -> Value {
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                json!({
                    "labels": labels_json(&a.labels),
                    "annotations": labels_json(&a.annotations),
                    "startsAt": rfc3339(a.starts_at),
                })
            })
            .collect(),
    )
}

/// A PagerDuty Events API v2 event: `trigger` while any alert fires, else `resolve` (which carries no
/// payload, as PagerDuty ignores it).
pub fn pagerduty_event(n: &Notification, cfg: &PagerdutyConfig) -> Value {
    let mut ev = json!({
        "routing_key": cfg.routing_key,
        "dedup_key": pagerduty_dedup_key(n.group_key),
        "client": "Pharos",
        "client_url": n.external_url,
    });
    match n.status() {
        AlertStatus::Resolved => ev["event_action"] = json!("resolve"),
        AlertStatus::Firing => {
            let common = n.common_labels();
            let severity = cfg
                .severity
                .clone()
                .or_else(|| common.get("severity").filter(|s| PAGERDUTY_SEVERITIES.contains(&s.as_str())).cloned())
                .unwrap_or_else(|| "error".to_string());
            let source = cfg
                .source
                .clone()
                .or_else(|| url_host(n.external_url).map(String::from))
                .unwrap_or_else(|| "pharos".into());
            let (firing, resolved) = (n.firing(), n.resolved());
            ev["event_action"] = json!("trigger");
            ev["payload"] = json!({
                "summary": truncate_chars(&n.title(), PAGERDUTY_SUMMARY_MAX),
                "source": source,
                "severity": severity,
                "custom_details": {
                    "num_firing": firing.len(),
                    "num_resolved": resolved.len(),
                    "firing": details(&firing),
                    "resolved": details(&resolved),
                },
            });
        }
    }
    ev
}

/// An SMS for a Twilio-shaped gateway: `POST {url}` with HTTP basic auth `account_sid:auth_token` and
/// the form fields `From`, `To`, `Body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsRequest {
    /// `{base}/2010-04-01/Accounts/{account_sid}/Messages.json`
    pub url: String,
    pub account_sid: String,
    pub auth_token: String,
    pub form: Vec<(String, String)>,
}

/// One short line for an alert: its `summary`, else `description`, else its labels less the group's.
fn one_line(a: &Alert, group: &Labels) -> String {
    let text =
        a.annotations.get("summary").or_else(|| a.annotations.get("description")).cloned().unwrap_or_else(|| {
            let rest: Labels =
                a.labels.iter().filter(|(k, _)| !group.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            format_labels(&rest)
        });
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The SMS text: the title, then one line per firing alert (then resolved ones), cut to 1600 characters.
pub fn sms_body(n: &Notification) -> String {
    let mut body = n.title();
    for a in n.firing().into_iter().chain(n.resolved()) {
        let mark = if a.is_firing() { "" } else { "[resolved] " };
        body.push_str(&format!("\n- {mark}{}", one_line(a, n.group_labels)));
    }
    truncate_chars(&body, SMS_MAX_CHARS)
}

pub fn sms_request(n: &Notification, cfg: &SmsConfig) -> SmsRequest {
    SmsRequest {
        url: format!("{}/2010-04-01/Accounts/{}/Messages.json", cfg.url.trim_end_matches('/'), cfg.account_sid),
        account_sid: cfg.account_sid.clone(),
        auth_token: cfg.auth_token.clone(),
        form: vec![("From".into(), cfg.from.clone()), ("To".into(), cfg.to.clone()), ("Body".into(), sms_body(n))],
    }
}

/// An email to send over SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub from: String,
    pub to: String,
    /// `host:port`
    pub smarthost: String,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    pub require_tls: bool,
    pub tls: crate::config::EmailTlsConfig,
    pub subject: String,
    pub body: String,
}

fn email_alert(out: &mut String, a: &Alert) {
    out.push_str(&format!(
        "[{}] {}\n",
        a.status().as_str().to_uppercase(),
        a.labels.get("alertname").map_or("", String::as_str)
    ));
    out.push_str("Labels:\n");
    for (k, v) in &a.labels {
        out.push_str(&format!("  {k} = {v}\n"));
    }
    if !a.annotations.is_empty() {
        out.push_str("Annotations:\n");
        for (k, v) in &a.annotations {
            out.push_str(&format!("  {k} = {v}\n"));
        }
    }
    out.push_str(&format!("Started: {}\n", rfc3339(a.starts_at)));
    if let Some(e) = a.ends_at {
        out.push_str(&format!("Ended: {}\n", rfc3339(e)));
    }
    if !a.generator_url.is_empty() {
        out.push_str(&format!("Source: {}\n", a.generator_url));
    }
    out.push('\n');
}

/// The plain-text email body: a summary line, every firing then resolved alert with its labels,
/// annotations and times, and the external URL.
pub fn email_body(n: &Notification) -> String {
    let (firing, resolved) = (n.firing(), n.resolved());
    let mut out = format!(
        "{} firing, {} resolved for group {} (receiver {}).\n\n",
        firing.len(),
        resolved.len(),
        format_labels(n.group_labels),
        n.receiver
    );
    for a in firing.into_iter().chain(resolved) {
        email_alert(&mut out, a);
    }
    if !n.external_url.is_empty() {
        out.push_str(&format!("View alerts: {}\n", n.external_url));
    }
    out
}

pub fn email_message(n: &Notification, cfg: &EmailConfig) -> EmailMessage {
    EmailMessage {
        from: cfg.from.clone(),
        to: cfg.to.clone(),
        smarthost: cfg.smarthost.clone(),
        auth_username: cfg.auth_username.clone(),
        auth_password: cfg.auth_password.clone(),
        require_tls: cfg.require_tls.unwrap_or(true),
        tls: cfg.tls_config.clone().unwrap_or_default(),
        subject: n.title(),
        body: email_body(n),
    }
}

/// The stable identity of a notification: receiver, group key and each alert's fingerprint and status,
/// as `receiver/group-hash/alerts-hash` (hex xxh3). The same group state always gives the same key.
pub fn notification_key(n: &Notification) -> String {
    let mut alerts: Vec<(u64, &str)> = n.alerts.iter().map(|a| (a.fingerprint(), a.status().as_str())).collect();
    alerts.sort();
    let mut buf = Vec::new();
    for (fp, st) in alerts {
        buf.extend_from_slice(&fp.to_be_bytes());
        buf.extend_from_slice(st.as_bytes());
        buf.push(0xff);
    }
    format!("{}/{:016x}/{:016x}", n.receiver, xxh3_64(n.group_key.as_bytes()), xxh3_64(&buf))
}

/// One request to make for a notification.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// `POST url` with a JSON body (and `Authorization` from the receiver's `http_config`).
    Webhook {
        url: String,
        body: Value,
        auth: Option<crate::config::ClientAuth>,
    },
    PagerDuty {
        url: String,
        body: Value,
    },
    Sms(SmsRequest),
    Email(EmailMessage),
    /// `POST {url}/api/v2/alerts` with a JSON body.
    Alertmanager {
        url: String,
        body: Value,
        auth: Option<crate::config::ClientAuth>,
    },
}

/// The request one integration needs for a notification, or None when there is nothing for it:
/// integrations without `send_resolved` get the firing alerts only, and nothing when none fire.
/// Alertmanager forwarding always includes resolved alerts (see [`alertmanager_v2_alerts`] for
/// `valid_for_ms`).
pub fn delivery(integration: &Integration, n: &Notification, now_ms: i64, valid_for_ms: i64) -> Option<Delivery> {
    let firing_alerts;
    let firing_only;
    let m: &Notification = if integration.send_resolved {
        n
    } else {
        firing_alerts = n.firing_only();
        firing_only = Notification { alerts: &firing_alerts, ..*n };
        &firing_only
    };
    if m.alerts.is_empty() {
        return None;
    }
    Some(match integration.config {
        IntegrationConfig::Email(c) => Delivery::Email(email_message(m, c)),
        IntegrationConfig::Webhook(c) => Delivery::Webhook {
            url: c.url.clone(),
            body: webhook_payload(m, c.max_alerts),
            auth: crate::config::http_auth(&c.http_config),
        },
        IntegrationConfig::PagerDuty(c) => Delivery::PagerDuty { url: c.url.clone(), body: pagerduty_event(m, c) },
        IntegrationConfig::Sms(c) => Delivery::Sms(sms_request(m, c)),
        IntegrationConfig::Alertmanager(c) => Delivery::Alertmanager {
            url: format!("{}/api/v2/alerts", c.url.trim_end_matches('/')),
            body: alertmanager_v2_alerts(m.alerts, now_ms, valid_for_ms),
            auth: crate::config::http_auth(&c.http_config),
        },
    })
}

/// The requests of the receiver's integrations named in `ids` (what [`crate::group::GroupState::tick`]
/// said to notify), as (integration id, request).
pub fn deliveries(
    receiver: &Receiver,
    ids: &[String],
    n: &Notification,
    now_ms: i64,
    valid_for_ms: i64,
) -> Vec<(String, Delivery)> {
    receiver
        .integrations()
        .into_iter()
        .filter(|i| ids.contains(&i.id))
        .filter_map(|i| delivery(&i, n, now_ms, valid_for_ms).map(|d| (i.id, d)))
        .collect()
}

#[cfg(test)]
#[path = "payload_test.rs"]
mod tests;
