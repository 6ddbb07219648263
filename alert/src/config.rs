//! The routing configuration, in Alertmanager's YAML shape:
//!
//! ```yaml
//! global:                         # optional defaults for receivers
//!   smtp_from: alerts@example.com
//!   smtp_smarthost: smtp.example.com:587
//! route:
//!   receiver: default             # required at the root
//!   group_by: [alertname, service]  # or ['...'] for all labels
//!   group_wait: 30s               # defaults: 30s, 5m, 4h
//!   group_interval: 5m
//!   repeat_interval: 4h
//!   routes:
//!     - matchers: ['severity="page"', 'team=~"db|infra"']
//!       receiver: oncall
//!       continue: true
//! receivers:
//!   - name: oncall
//!     pagerduty_configs: [{routing_key: abc}]
//!     sms_configs: [{account_sid: AC1, auth_token: t, from: "+15550001", to: "+15550002"}]
//!   - name: default
//!     email_configs: [{to: team@example.com}]
//!     webhook_configs: [{url: https://hooks.example.com/alerts}]
//!     alertmanager_configs: [{url: http://am:9093}]
//! inhibit_rules:
//!   - source_matchers: ['severity="page"']
//!     target_matchers: ['severity="warning"']
//!     equal: [service]
//! ```
//!
//! Alertmanager's older `match`/`match_re` maps (routes) and `source_match`/`target_match`(`_re`) (inhibit
//! rules) are read too. [`parse_routing_config`] checks everything it can and reports every problem with
//! its line and path (`route.routes[1].receiver`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::duration::PromDuration;
use crate::inhibit::InhibitRule;
use crate::labels::{is_valid_label_name, Labels};
use crate::matcher::{parse_matchers, MatchOp, Matcher};
use crate::route::{Destination, GroupBy, GroupTiming, Route};
use crate::yamlpos::{key, PosIndex, Seg};
pub use pharos_promconf::http::ClientAuth;

/// PagerDuty's Events API v2 endpoint.
pub const DEFAULT_PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Twilio's API (the SMS gateway's base URL; messages go to `/2010-04-01/Accounts/{sid}/Messages.json`).
pub const DEFAULT_SMS_URL: &str = "https://api.twilio.com";

/// A validated routing configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingConfig {
    pub route: Route,
    pub receivers: Vec<Receiver>,
    pub inhibit_rules: Vec<InhibitRule>,
}

impl RoutingConfig {
    /// The receivers and notification groups of an alert with these labels.
    pub fn destinations(&self, labels: &Labels) -> Vec<Destination> {
        self.route.destinations(labels)
    }

    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }
}

fn yes() -> bool {
    true
}

/// A named set of integrations; a notification to it goes to each.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email_configs: Vec<EmailConfig>,
    #[serde(default)]
    pub webhook_configs: Vec<WebhookConfig>,
    #[serde(default)]
    pub pagerduty_configs: Vec<PagerdutyConfig>,
    #[serde(default)]
    pub sms_configs: Vec<SmsConfig>,
    #[serde(default)]
    pub alertmanager_configs: Vec<AlertmanagerConfig>,
}

impl Receiver {
    /// The receiver's integrations in a fixed order (email, webhook, pagerduty, sms, alertmanager), each
    /// with a stable id such as `webhook/1` under which its notification log is kept.
    pub fn integrations<'a>(&'a self) -> Vec<Integration<'a>> {
        let mut out: Vec<Integration<'_>> = Vec::new();
        let mut push = |kind: &str, i: usize, send_resolved: bool, config: IntegrationConfig<'a>| {
            out.push(Integration { id: format!("{kind}/{i}"), send_resolved, config });
        };
        for (i, c) in self.email_configs.iter().enumerate() {
            push("email", i, c.send_resolved, IntegrationConfig::Email(c));
        }
        for (i, c) in self.webhook_configs.iter().enumerate() {
            push("webhook", i, c.send_resolved, IntegrationConfig::Webhook(c));
        }
        for (i, c) in self.pagerduty_configs.iter().enumerate() {
            push("pagerduty", i, c.send_resolved, IntegrationConfig::PagerDuty(c));
        }
        for (i, c) in self.sms_configs.iter().enumerate() {
            push("sms", i, c.send_resolved, IntegrationConfig::Sms(c));
        }
        // An Alertmanager must hear of resolutions, or it keeps the alert until it expires.
        for (i, c) in self.alertmanager_configs.iter().enumerate() {
            push("alertmanager", i, true, IntegrationConfig::Alertmanager(c));
        }
        out
    }
}

/// One integration of a receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Integration<'a> {
    /// `kind/index`, e.g. `email/0`.
    pub id: String,
    pub send_resolved: bool,
    pub config: IntegrationConfig<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IntegrationConfig<'a> {
    Email(&'a EmailConfig),
    Webhook(&'a WebhookConfig),
    PagerDuty(&'a PagerdutyConfig),
    Sms(&'a SmsConfig),
    Alertmanager(&'a AlertmanagerConfig),
}

/// Email over SMTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    #[serde(default)]
    pub to: String,
    /// Default: `global.smtp_from`.
    #[serde(default)]
    pub from: String,
    /// `host:port`; default: `global.smtp_smarthost`.
    #[serde(default)]
    pub smarthost: String,
    #[serde(default)]
    pub auth_username: Option<String>,
    #[serde(default)]
    pub auth_password: Option<String>,
    /// STARTTLS required (default true, as Alertmanager). A smarthost on port 465 speaks TLS from the first
    /// byte (implicit TLS) whatever this says.
    #[serde(default)]
    pub require_tls: Option<bool>,
    /// How the server's certificate is verified (default: the Mozilla roots and the smarthost's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<EmailTlsConfig>,
    #[serde(default)]
    pub send_resolved: bool,
}

/// An email receiver's `tls_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTlsConfig {
    /// A CA (PEM) to trust besides the Mozilla roots: a mail server with a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// The name the certificate must hold, when not the smarthost's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A JSON POST shaped like Alertmanager's webhook payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(default)]
    pub url: String,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Most alerts in one payload (0: all); the rest are counted in `truncatedAlerts`.
    #[serde(default)]
    pub max_alerts: usize,
    /// Credentials for the receiver (`authorization`, `basic_auth`, `bearer_token(_file)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_config: Option<HttpConfig>,
}

/// Alertmanager's `http_config`, as far as Pharos uses it: how requests to the receiver authenticate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<pharos_promconf::http::Authorization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<pharos_promconf::http::BasicAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
}

impl HttpConfig {
    pub fn auth(&self) -> Result<Option<ClientAuth>, pharos_promconf::http::AuthError> {
        pharos_promconf::http::client_auth(
            self.authorization.clone(),
            self.basic_auth.clone(),
            self.bearer_token.clone(),
            self.bearer_token_file.clone(),
        )
    }
}

/// The credentials of an optional `http_config` (None when absent; validated with the configuration).
pub fn http_auth(c: &Option<HttpConfig>) -> Option<ClientAuth> {
    c.as_ref().and_then(|h| h.auth().ok().flatten())
}

/// PagerDuty Events API v2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerdutyConfig {
    #[serde(default)]
    pub routing_key: String,
    /// Default: `global.pagerduty_url`, else [`DEFAULT_PAGERDUTY_URL`].
    #[serde(default)]
    pub url: String,
    /// critical, error, warning or info; default: the alerts' common `severity` label if it is one of
    /// those, else `error`.
    #[serde(default)]
    pub severity: Option<String>,
    /// `payload.source`; default: the external URL's host, else `pharos`.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

/// SMS through an HTTP gateway shaped like Twilio's Messages API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// The gateway's base URL; default [`DEFAULT_SMS_URL`].
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub account_sid: String,
    #[serde(default)]
    pub auth_token: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub send_resolved: bool,
}

/// Forwarding to an Alertmanager (its API v2, `POST {url}/api/v2/alerts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    #[serde(default)]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_config: Option<HttpConfig>,
}

/// A problem in the routing configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: Option<String>,
    pub line: usize,
    /// `route.routes[1].receiver`; empty for syntax errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `routing.yml:12: route.routes[1].receiver: receiver "x" is not defined`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}:{}: ", self.line)?,
            None => write!(f, "line {}: ", self.line)?,
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    global: Option<RawGlobal>,
    route: Option<RawRoute>,
    receivers: Option<Vec<Receiver>>,
    inhibit_rules: Option<Vec<RawInhibit>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    smtp_from: Option<String>,
    smtp_smarthost: Option<String>,
    smtp_auth_username: Option<String>,
    smtp_auth_password: Option<String>,
    smtp_require_tls: Option<bool>,
    pagerduty_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    receiver: Option<String>,
    group_by: Option<Vec<String>>,
    group_wait: Option<String>,
    group_interval: Option<String>,
    repeat_interval: Option<String>,
    matchers: Option<Vec<String>>,
    #[serde(rename = "match")]
    match_eq: Option<BTreeMap<String, String>>,
    match_re: Option<BTreeMap<String, String>>,
    #[serde(rename = "continue")]
    continue_matching: Option<bool>,
    routes: Option<Vec<RawRoute>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInhibit {
    source_matchers: Option<Vec<String>>,
    target_matchers: Option<Vec<String>>,
    source_match: Option<BTreeMap<String, String>>,
    source_match_re: Option<BTreeMap<String, String>>,
    target_match: Option<BTreeMap<String, String>>,
    target_match_re: Option<BTreeMap<String, String>>,
    equal: Option<Vec<String>>,
}

/// Parses and validates a routing configuration; errors print as `line 12: ...`.
pub fn parse_routing_config(text: &str) -> Result<RoutingConfig, Vec<ConfigError>> {
    parse(None, text)
}

/// Like [`parse_routing_config`], with errors that start with the file's name.
pub fn parse_routing_config_named(file: &str, text: &str) -> Result<RoutingConfig, Vec<ConfigError>> {
    parse(Some(file), text)
}

fn parse(file: Option<&str>, text: &str) -> Result<RoutingConfig, Vec<ConfigError>> {
    let raw: RawConfig = match serde_yaml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            let message = crate::rules::yaml_message(&e);
            return Err(vec![ConfigError { file: file.map(String::from), line, path: String::new(), message }]);
        }
    };
    let index = PosIndex::build(text);
    let mut v = Checker { file, index: &index, errors: vec![] };
    let out = v.config(raw);
    match out {
        Some(c) if v.errors.is_empty() => Ok(c),
        _ => {
            v.errors.sort_by_key(|e| e.line);
            Err(v.errors)
        }
    }
}

fn path_text(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn join(path: &[Seg], more: &[Seg]) -> Vec<Seg> {
    [path, more].concat()
}

struct Checker<'a> {
    file: Option<&'a str>,
    index: &'a PosIndex,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, path: &[Seg], message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.map(String::from),
            line: self.index.nearest_line(path),
            path: path_text(path),
            message: message.into(),
        });
    }

    fn config(&mut self, raw: RawConfig) -> Option<RoutingConfig> {
        let global = raw.global.unwrap_or_default();
        let mut receivers = raw.receivers.unwrap_or_default();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, r) in receivers.iter_mut().enumerate() {
            let path = vec![key("receivers"), Seg::Index(i)];
            self.receiver(&path, r, &global);
            if !r.name.is_empty() {
                if let Some(first) = names.get(&r.name) {
                    let message = format!("receiver {:?} is defined twice (first at line {first})", r.name);
                    self.error(&join(&path, &[key("name")]), message);
                } else {
                    names.insert(r.name.clone(), self.index.nearest_line(&path));
                }
            }
        }
        let Some(root) = raw.route else {
            self.error(&[], "route: missing (the root route and its receiver)");
            return None;
        };
        let root_path = vec![key("route")];
        if root.receiver.as_deref().unwrap_or("").is_empty() {
            self.error(&root_path, "the root route needs a receiver");
        }
        for (field, set) in [
            ("matchers", root.matchers.is_some()),
            ("match", root.match_eq.is_some()),
            ("match_re", root.match_re.is_some()),
        ] {
            if set {
                self.error(
                    &join(&root_path, &[key(field)]),
                    "the root route must not have matchers (it receives every alert)",
                );
            }
        }
        if root.continue_matching == Some(true) {
            self.error(&root_path, "the root route cannot have continue");
        }
        let parent = Route {
            receiver: String::new(),
            group_by: GroupBy::Labels(vec![]),
            timing: GroupTiming::default(),
            matchers: vec![],
            continue_matching: false,
            routes: vec![],
            key: "{}".into(),
        };
        let route = self.route(&root_path, root, &parent, None, &names);
        let inhibit_rules = raw
            .inhibit_rules
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.inhibit(&[key("inhibit_rules"), Seg::Index(i)], r))
            .collect();
        Some(RoutingConfig { route, receivers, inhibit_rules })
    }

    fn required(&mut self, path: &[Seg], field: &str, value: &str) {
        if value.trim().is_empty() {
            self.error(&join(path, &[key(field)]), "missing");
        }
    }

    fn url(&mut self, path: &[Seg], field: &str, value: &str) {
        if value.trim().is_empty() {
            self.error(&join(path, &[key(field)]), "missing");
        } else if !(value.starts_with("http://") || value.starts_with("https://")) || value.len() < 9 {
            self.error(&join(path, &[key(field)]), format!("{value:?} is not an http:// or https:// URL"));
        }
    }

    fn receiver(&mut self, path: &[Seg], r: &mut Receiver, g: &RawGlobal) {
        if r.name.is_empty() {
            self.error(&join(path, &[key("name")]), "a receiver needs a name");
        }
        for (i, c) in r.email_configs.iter_mut().enumerate() {
            let p = join(path, &[key("email_configs"), Seg::Index(i)]);
            if c.from.is_empty() {
                c.from = g.smtp_from.clone().unwrap_or_default();
            }
            if c.smarthost.is_empty() {
                c.smarthost = g.smtp_smarthost.clone().unwrap_or_default();
            }
            if c.auth_username.is_none() {
                c.auth_username = g.smtp_auth_username.clone();
            }
            if c.auth_password.is_none() {
                c.auth_password = g.smtp_auth_password.clone();
            }
            if c.require_tls.is_none() {
                c.require_tls = Some(g.smtp_require_tls.unwrap_or(true));
            }
            self.required(&p, "to", &c.to);
            if c.from.is_empty() {
                self.error(&join(&p, &[key("from")]), "missing (and no global.smtp_from)");
            }
            if c.smarthost.is_empty() {
                self.error(&join(&p, &[key("smarthost")]), "missing (and no global.smtp_smarthost)");
            } else if !c
                .smarthost
                .rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok())
            {
                self.error(&join(&p, &[key("smarthost")]), format!("{:?} is not host:port", c.smarthost));
            }
        }
        for (i, c) in r.webhook_configs.iter().enumerate() {
            let p = join(path, &[key("webhook_configs"), Seg::Index(i)]);
            self.url(&p, "url", &c.url);
            self.http_config(&p, &c.http_config);
        }
        for (i, c) in r.pagerduty_configs.iter_mut().enumerate() {
            let p = join(path, &[key("pagerduty_configs"), Seg::Index(i)]);
            if c.url.is_empty() {
                c.url = g.pagerduty_url.clone().unwrap_or_else(|| DEFAULT_PAGERDUTY_URL.to_string());
            }
            self.required(&p, "routing_key", &c.routing_key);
            self.url(&p, "url", &c.url.clone());
            if let Some(s) = &c.severity {
                if !crate::payload::PAGERDUTY_SEVERITIES.contains(&s.as_str()) {
                    self.error(&join(&p, &[key("severity")]), format!("{s:?} is not critical, error, warning or info"));
                }
            }
        }
        for (i, c) in r.sms_configs.iter_mut().enumerate() {
            let p = join(path, &[key("sms_configs"), Seg::Index(i)]);
            if c.url.is_empty() {
                c.url = DEFAULT_SMS_URL.to_string();
            }
            self.url(&p, "url", &c.url.clone());
            for (field, v) in
                [("account_sid", &c.account_sid), ("auth_token", &c.auth_token), ("from", &c.from), ("to", &c.to)]
            {
                self.required(&p, field, v);
            }
        }
        for (i, c) in r.alertmanager_configs.iter().enumerate() {
            let p = join(path, &[key("alertmanager_configs"), Seg::Index(i)]);
            self.url(&p, "url", &c.url);
            self.http_config(&p, &c.http_config);
        }
    }

    fn http_config(&mut self, path: &[Seg], c: &Option<HttpConfig>) {
        if let Some(Err(e)) = c.as_ref().map(HttpConfig::auth) {
            let mut p = join(path, &[key("http_config")]);
            if let Some(k) = e.key {
                p.push(key(k));
            }
            self.error(&p, e.message);
        }
    }

    fn duration(&mut self, path: &[Seg], field: &str, text: Option<&str>, inherited: PromDuration) -> PromDuration {
        let Some(t) = text else { return inherited };
        let p = join(path, &[key(field)]);
        match PromDuration::parse(t) {
            Ok(d) if d.is_zero() && field != "group_wait" => {
                self.error(&p, "must be greater than 0");
                inherited
            }
            Ok(d) => d,
            Err(e) => {
                self.error(&p, e.to_string());
                inherited
            }
        }
    }

    fn matchers(
        &mut self,
        path: &[Seg],
        field: &str,
        list: Option<Vec<String>>,
        eq: Option<(&str, BTreeMap<String, String>)>,
        re: Option<(&str, BTreeMap<String, String>)>,
    ) -> Vec<Matcher> {
        let mut out = Vec::new();
        for (i, text) in list.unwrap_or_default().iter().enumerate() {
            match parse_matchers(text) {
                Ok(ms) => out.extend(ms),
                Err(e) => self.error(&join(path, &[key(field), Seg::Index(i)]), e.to_string()),
            }
        }
        for (op, legacy) in [(MatchOp::Eq, eq), (MatchOp::Re, re)] {
            let Some((field, map)) = legacy else { continue };
            for (name, value) in map {
                match Matcher::new(&name, op, &value) {
                    Ok(m) => out.push(m),
                    Err(e) => self.error(&join(path, &[key(field), key(&name)]), e.to_string()),
                }
            }
        }
        out
    }

    fn route(
        &mut self,
        path: &[Seg],
        raw: RawRoute,
        parent: &Route,
        index: Option<usize>,
        receivers: &HashMap<String, usize>,
    ) -> Route {
        let receiver = raw.receiver.clone().unwrap_or_else(|| parent.receiver.clone());
        // Reported where it is written, not again on every child that inherits it.
        if raw.receiver.is_some() && !receiver.is_empty() && !receivers.contains_key(&receiver) {
            self.error(&join(path, &[key("receiver")]), format!("receiver {receiver:?} is not defined"));
        }
        let group_by = match raw.group_by {
            None => parent.group_by.clone(),
            Some(names) if names.iter().any(|n| n == "...") => {
                if names.len() > 1 {
                    self.error(&join(path, &[key("group_by")]), "'...' groups by all labels and must be alone");
                }
                GroupBy::All
            }
            Some(names) => {
                for n in &names {
                    if !is_valid_label_name(n) {
                        self.error(&join(path, &[key("group_by")]), format!("invalid label name {n:?}"));
                    }
                }
                GroupBy::Labels(names)
            }
        };
        let timing = GroupTiming {
            group_wait: self.duration(path, "group_wait", raw.group_wait.as_deref(), parent.timing.group_wait),
            group_interval: self.duration(
                path,
                "group_interval",
                raw.group_interval.as_deref(),
                parent.timing.group_interval,
            ),
            repeat_interval: self.duration(
                path,
                "repeat_interval",
                raw.repeat_interval.as_deref(),
                parent.timing.repeat_interval,
            ),
        };
        let matchers = self.matchers(
            path,
            "matchers",
            raw.matchers,
            raw.match_eq.map(|m| ("match", m)),
            raw.match_re.map(|m| ("match_re", m)),
        );
        let key_text = match index {
            None => parent.key.clone(),
            Some(i) => Route::child_key(&parent.key, &matchers, i),
        };
        let mut route = Route {
            receiver,
            group_by,
            timing,
            matchers,
            continue_matching: raw.continue_matching.unwrap_or(false),
            routes: vec![],
            key: key_text,
        };
        let children: Vec<Route> = raw
            .routes
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, c)| self.route(&join(path, &[key("routes"), Seg::Index(i)]), c, &route, Some(i), receivers))
            .collect();
        route.routes = children;
        route
    }

    fn inhibit(&mut self, path: &[Seg], raw: RawInhibit) -> InhibitRule {
        let source_matchers = self.matchers(
            path,
            "source_matchers",
            raw.source_matchers,
            raw.source_match.map(|m| ("source_match", m)),
            raw.source_match_re.map(|m| ("source_match_re", m)),
        );
        let target_matchers = self.matchers(
            path,
            "target_matchers",
            raw.target_matchers,
            raw.target_match.map(|m| ("target_match", m)),
            raw.target_match_re.map(|m| ("target_match_re", m)),
        );
        let equal = raw.equal.unwrap_or_default();
        for n in &equal {
            if !is_valid_label_name(n) {
                self.error(&join(path, &[key("equal")]), format!("invalid label name {n:?}"));
            }
        }
        if source_matchers.is_empty() || target_matchers.is_empty() {
            self.error(path, "an inhibit rule needs source and target matchers");
        }
        InhibitRule { source_matchers, target_matchers, equal }
    }
}

#[cfg(test)]
#[path = "config_test.rs"]
mod tests;
