//! Pharos alerting logic, free of networking, Raft and clocks (the node drives it and passes time in as
//! milliseconds): Prometheus-shaped rule files, the per-rule state machine (inactive, pending, firing,
//! resolved), annotation templates, Alertmanager-like routing, grouping, silences and inhibition, and the
//! payloads sent to receivers.
//!
//! # Layout
//!
//! ```text
//!  rules.yml ──rules::parse_rule_file──► RuleFile ─ groups ─ AlertingRule / RecordingRule
//!                                                              │ expr run by the node (pharos-query)
//!                                                              ▼
//!  committed RuleState + rows ──state::evaluate──► new RuleState + Transitions ──► node commits via Raft
//!                                                              │ firing / resolved instances as Alerts
//!                                                              ▼
//!  routing.yml ──config::parse_routing_config──► RoutingConfig.destinations(labels): (receiver, group key)
//!        silence::is_silenced, inhibit::is_inhibited: drop muted alerts
//!        group::GroupState::tick: group_wait / group_interval / repeat_interval say when to notify
//!                                                              ▼
//!  payload::deliveries(receiver, Notification): webhook, PagerDuty, SMS, email, Alertmanager bodies
//! ```
//!
//! | module       | what                                                                                  |
//! |--------------|---------------------------------------------------------------------------------------|
//! | [`rules`]    | rule-file types, parsing and validation with line numbers                             |
//! | [`state`]    | the alert state machine ([`evaluate`]), recording rules ([`record`]), query rows      |
//! | [`template`] | `{{ $labels.x }}`, `{{ humanize $value }}`, `{{ printf "%.2f" $value }}`...            |
//! | [`gofmt`]    | Go's float formatting and printf, so templates render as in Prometheus                |
//! | [`labels`]   | label sets, fingerprints (xxh3), notification dedup keys                              |
//! | [`alert`]    | an alert as routing and receivers see it                                              |
//! | [`matcher`]  | Alertmanager matchers (`team=~"db\|infra"`)                                           |
//! | [`config`]   | routing configuration: route tree, receivers, inhibit rules                           |
//! | [`route`]    | route matching and group keys                                                         |
//! | [`group`]    | notification timing per group                                                         |
//! | [`silence`]  | silences                                                                              |
//! | [`inhibit`]  | inhibition                                                                            |
//! | [`payload`]  | receiver payloads and notification keys                                               |
//! | [`duration`] | Prometheus durations (`1h30m`)                                                        |
//! | [`time`]     | RFC 3339 times as Go writes them                                                      |
//! | [`yamlpos`]  | line numbers of YAML entries, for error messages                                      |

pub mod alert;
/// Prometheus durations (shared with the scrape configuration, see pharos-promconf).
pub use pharos_promconf::duration;
/// Line numbers of YAML entries (pharos-promconf).
pub use pharos_promconf::yamlpos;
pub mod config;
pub mod gofmt;
pub mod group;
pub mod inhibit;
pub mod labels;
pub mod matcher;
pub mod payload;
pub mod route;
pub mod rules;
pub mod silence;
pub mod state;
pub mod template;
pub mod time;

pub use alert::{Alert, AlertStatus};
pub use config::{parse_routing_config, parse_routing_config_named, ConfigError, Integration, Receiver, RoutingConfig};
pub use duration::PromDuration;
pub use group::{GroupState, NotifyLog, Tick};
pub use inhibit::{is_inhibited, InhibitRule};
pub use labels::{dedup_key, fingerprint, Labels};
pub use matcher::Matcher;
pub use payload::{deliveries, delivery, notification_key, Delivery, Notification};
pub use route::{Destination, GroupTiming, Route};
pub use rules::{
    parse_rule_file, parse_rule_file_named, AlertingRule, NoData, RecordingRule, Rule, RuleError, RuleFile, RuleGroup,
};
pub use silence::{is_silenced, Silence};
pub use state::{
    absent_rows, evaluate, evaluate_with_data, record, rows_from_series, AlertState, EvalContext, EvalError,
    Evaluation, Instance, Row, RuleState, Transition,
};
pub use template::{Template, TemplateData};
