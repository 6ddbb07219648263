//! The alerting pipeline through the public API, as the node will drive it: rule file -> evaluations ->
//! transitions -> alerts -> routing, silences, inhibition -> group timing -> receiver payloads. Plus the
//! state machine's invariants over random row sequences.

use std::collections::{BTreeMap, BTreeSet};

use pharos_alert::labels::labels;
use pharos_alert::matcher::parse_matchers;
use pharos_alert::state::RESOLVED_RETENTION_MS;
use pharos_alert::{
    deliveries, evaluate, is_inhibited, is_silenced, notification_key, parse_routing_config_named,
    parse_rule_file_named, Alert, AlertState, AlertingRule, Delivery, EvalContext, GroupState, Labels, Notification,
    PromDuration, Row, Rule, RuleState, Silence,
};
use proptest::prelude::*;

const RULES: &str = include_str!("../examples/rules.yml");
const ROUTING: &str = include_str!("../examples/routing.yml");
const M: i64 = 60_000;
const T0: i64 = 1_706_702_400_000; // 2024-01-31T12:00:00Z

fn alerting(name: &str, nth: usize) -> AlertingRule {
    let file = parse_rule_file_named("rules.yml", RULES).unwrap();
    file.groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter_map(|r| match r {
            Rule::Alerting(a) if a.name == name => Some(a.clone()),
            _ => None,
        })
        .nth(nth)
        .unwrap()
}

#[test]
fn t10_instance_down_pages_through_pagerduty_and_sms() {
    let rule = alerting("InstanceDown", 0);
    let routing = parse_routing_config_named("routing.yml", ROUTING).unwrap();
    let down = |insts: &[&str]| -> Vec<Row> {
        insts.iter().map(|i| Row::new(labels([("instance", *i), ("job", "node")]), 0.0)).collect()
    };

    // t=0: both down, pending (for: 1m). t=1m: both fire.
    let mut state = RuleState::default();
    let ev = evaluate(&rule, &state, &down(&["db-1:9100", "db-2:9100"]), &EvalContext::at(T0)).unwrap();
    assert!(ev.transitions.iter().all(|t| t.to == AlertState::Pending && !t.notifies()));
    state = ev.state;
    let ev = evaluate(&rule, &state, &down(&["db-1:9100", "db-2:9100"]), &EvalContext::at(T0 + M)).unwrap();
    assert_eq!(ev.transitions.iter().filter(|t| t.notifies()).count(), 2);
    let t = &ev.transitions[0];
    assert_eq!(
        t.dedup_key("availability/InstanceDown"),
        format!("availability/InstanceDown/{:016x}/firing", t.fingerprint)
    );
    state = ev.state;

    // The firing alerts, as routing sees them.
    let alerts = state.alerts("https://pharos.example/alerts");
    assert_eq!(alerts.len(), 2);
    assert_eq!(
        alerts[0].labels,
        labels([
            ("alertname", "InstanceDown"),
            ("instance", "db-1:9100"),
            ("job", "node"),
            ("severity", "page"),
            ("team", "sre")
        ])
    );
    assert_eq!(alerts[0].annotations["summary"], "db-1:9100 of job node is down");
    assert_eq!(alerts[0].starts_at, T0 + M);

    // severity=page goes to oncall, grouped by alertname (service is absent).
    let dests = routing.destinations(&alerts[0].labels);
    assert_eq!(dests.len(), 1);
    let d = &dests[0];
    assert_eq!(
        (d.receiver.as_str(), d.group_key.as_str()),
        ("oncall", r#"{}/{severity="page"}/0:{alertname="InstanceDown"}"#)
    );
    assert_eq!(routing.destinations(&alerts[1].labels)[0].group_key, d.group_key, "both alerts share the group");

    // The group waits group_wait (10s on this route), then notifies.
    let mut group = GroupState::new(T0 + M, alerts[0].starts_at, &d.timing);
    let firing: BTreeSet<u64> = alerts.iter().map(Alert::fingerprint).collect();
    let receiver = routing.receiver(&d.receiver).unwrap();
    let integrations: Vec<(String, bool)> =
        receiver.integrations().into_iter().map(|i| (i.id, i.send_resolved)).collect();
    let none = BTreeSet::new();
    assert!(group.tick(T0 + M + 9_999, &d.timing, &firing, &none, &integrations).notify.is_empty());
    let tick = group.tick(T0 + M + 10_000, &d.timing, &firing, &none, &integrations);
    assert_eq!(tick.notify, vec!["pagerduty/0".to_string(), "sms/0".to_string()]);
    assert_eq!(tick.next, T0 + M + 10_000 + 5 * M);

    let n = Notification {
        receiver: &d.receiver,
        group_key: &d.group_key,
        group_labels: &d.group_labels,
        alerts: &alerts,
        external_url: "https://pharos.example",
    };
    let out = deliveries(receiver, &tick.notify, &n, T0 + M + 10_000, 4 * M);
    assert_eq!(out.len(), 2);
    let (_, Delivery::PagerDuty { url, body }) = &out[0] else { panic!("{out:?}") };
    assert_eq!(url, "https://events.pagerduty.com/v2/enqueue");
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["routing_key"], "R0UT1NGKEY");
    assert_eq!(body["payload"]["severity"], "critical");
    assert_eq!(body["payload"]["summary"], "[FIRING:2] InstanceDown (node page sre)");
    let (_, Delivery::Sms(sms)) = &out[1] else { panic!("{out:?}") };
    assert_eq!(sms.url, "https://api.twilio.com/2010-04-01/Accounts/AC0123456789/Messages.json");
    assert_eq!(
        sms.form[2].1,
        "[FIRING:2] InstanceDown (node page sre)\n- db-1:9100 of job node is down\n- db-2:9100 of job node is down"
    );
    let key = notification_key(&n);

    // db-1 recovers: resolved; PagerDuty (send_resolved) hears at the next group interval.
    let ev = evaluate(&rule, &state, &down(&["db-2:9100"]), &EvalContext::at(T0 + 3 * M)).unwrap();
    assert_eq!(ev.transitions.len(), 1);
    assert_eq!((ev.transitions[0].from, ev.transitions[0].to), (AlertState::Firing, AlertState::Resolved));
    state = ev.state;
    let alerts = state.alerts("https://pharos.example/alerts");
    let firing: BTreeSet<u64> = alerts.iter().filter(|a| a.is_firing()).map(Alert::fingerprint).collect();
    let resolved: BTreeSet<u64> = alerts.iter().filter(|a| !a.is_firing()).map(Alert::fingerprint).collect();
    let tick = group.tick(T0 + M + 10_000 + 5 * M, &d.timing, &firing, &resolved, &integrations);
    assert_eq!(tick.notify, vec!["pagerduty/0".to_string()], "the SMS has no send_resolved and nothing new fires");
    let n = Notification { alerts: &alerts, ..n };
    assert_ne!(notification_key(&n), key);
    let out = deliveries(receiver, &tick.notify, &n, T0 + 6 * M, 4 * M);
    assert_eq!(out.len(), 1);
    let (_, Delivery::PagerDuty { body, .. }) = &out[0] else { panic!("{out:?}") };
    assert_eq!(body["payload"]["custom_details"]["num_resolved"], 1);
}

#[test]
fn t20_silences_and_inhibition_mute_alerts() {
    let routing = parse_routing_config_named("routing.yml", ROUTING).unwrap();
    let page = Alert {
        labels: labels([("alertname", "ApiDown"), ("service", "api"), ("severity", "page")]),
        annotations: Labels::new(),
        starts_at: T0,
        ends_at: None,
        generator_url: String::new(),
    };
    let warning = labels([("alertname", "HighLatency"), ("service", "api"), ("severity", "warning")]);
    let other = labels([("alertname", "HighLatency"), ("service", "web"), ("severity", "warning")]);
    let all = [page.clone()];
    assert!(is_inhibited(&routing.inhibit_rules, &warning, &all));
    assert!(!is_inhibited(&routing.inhibit_rules, &other, &all));
    assert!(!is_inhibited(&routing.inhibit_rules, &page.labels, &all));

    let silence = Silence {
        id: "3f2a".into(),
        matchers: parse_matchers(r#"service="web", alertname=~"High.*""#).unwrap(),
        starts_at: T0,
        ends_at: T0 + 60 * M,
        created_by: "alice".into(),
        comment: "deploying web".into(),
    };
    silence.validate().unwrap();
    let silences = [silence];
    assert!(is_silenced(&silences, &other, T0 + 30 * M));
    assert!(!is_silenced(&silences, &other, T0 + 60 * M));
    assert!(!is_silenced(&silences, &warning, T0 + 30 * M));
}

#[test]
fn t30_high_latency_annotations_render_like_prometheus() {
    let rule = alerting("HighLatency", 0);
    let rows = [Row::new(labels([("service", "checkout")]), 1534.567)];
    let ev = evaluate(&rule, &RuleState::default(), &rows, &EvalContext::at(T0)).unwrap();
    let i = ev.state.instances.values().next().unwrap();
    assert_eq!(i.annotations["summary"], "p99 latency of checkout is 1.535kms");
    assert_eq!(i.annotations["description"], "1534.6ms over the last 5 minutes (threshold 500ms)");
    assert_eq!(i.state, AlertState::Pending);
    assert_eq!(rule.keep_firing_for, PromDuration(10 * M));
}

#[test]
fn t40_errors_in_a_broken_rule_file() {
    let broken =
        RULES.replace("for: 5m", "for: 5x").replace("{{ humanizePercentage $value }}", "{{ humanizePercent $value }}");
    let errs: Vec<String> =
        parse_rule_file_named("rules.yml", &broken).unwrap_err().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errs,
        vec![
            r#"rules.yml:28: group "api", alert "HighLatency": for: invalid duration "5x": unknown unit (use ms, s, m, h, d, w or y)"#,
            r#"rules.yml:53: group "api", alert "ErrorBudgetBurn": annotations.summary: template: function "humanizePercent" not defined (at offset 37)"#,
        ]
    );
}

// ---- invariants over random evaluations ----

fn rule(for_ms: i64, keep_ms: i64) -> AlertingRule {
    AlertingRule {
        name: "R".into(),
        expr: String::new(),
        for_duration: PromDuration(for_ms),
        keep_firing_for: PromDuration(keep_ms),
        no_data: pharos_alert::NoData::Ok,
        no_data_for: PromDuration::ZERO,
        absent: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        line: 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// For random presence patterns of 3 instances over 40 one-minute evaluations (some skipped), every
    /// transition agrees with the state before and after, and every state obeys `for`, `keep_firing_for`
    /// and the resolved retention.
    #[test]
    fn t50_state_machine_invariants(
        for_min in 0i64..4,
        keep_min in prop::sample::select(vec![0i64, 2, 5]),
        steps in prop::collection::vec((prop::collection::vec(any::<bool>(), 3), 1i64..20), 1..40),
    ) {
        let r = rule(for_min * M, keep_min * M);
        let mut state = RuleState::default();
        let mut now = T0;
        for (present, gap) in steps {
            now += gap * M;
            let rows: Vec<Row> = present.iter().enumerate().filter(|(_, p)| **p)
                .map(|(i, _)| Row::new(labels([("instance", format!("i{i}"))]), i as f64)).collect();
            let ev = evaluate(&r, &state, &rows, &EvalContext::at(now)).unwrap();
            let present_fps: BTreeSet<u64> = rows.iter().map(|row| {
                let mut l = row.labels.clone();
                l.insert("alertname".into(), "R".into());
                pharos_alert::fingerprint(&l)
            }).collect();
            let before = |fp: &u64| state.instances.get(fp).map_or(AlertState::Inactive, |i| i.state);
            let after = |fp: &u64| ev.state.instances.get(fp).map_or(AlertState::Inactive, |i| i.state);
            // Transitions are exactly the changes of state, in fingerprint order.
            let fps: BTreeSet<u64> = state.instances.keys().chain(ev.state.instances.keys()).copied().collect();
            let changed: Vec<u64> = fps.iter().copied().filter(|fp| before(fp) != after(fp)).collect();
            let listed: Vec<u64> = ev.transitions.iter().map(|t| t.fingerprint).collect();
            prop_assert_eq!(&listed, &changed);
            for t in &ev.transitions {
                prop_assert_eq!(t.from, before(&t.fingerprint));
                prop_assert_eq!(t.to, after(&t.fingerprint));
                prop_assert_eq!(t.at, now);
                prop_assert!(!(t.from == AlertState::Pending && t.to == AlertState::Resolved));
            }
            for (fp, i) in &ev.state.instances {
                prop_assert_eq!(pharos_alert::fingerprint(&i.labels), *fp);
                match i.state {
                    AlertState::Pending => {
                        prop_assert!(present_fps.contains(fp));
                        prop_assert!(now - i.active_since < for_min * M);
                    }
                    AlertState::Firing => {
                        prop_assert!(i.fired_at.unwrap() - i.active_since >= for_min * M);
                        if !present_fps.contains(fp) {
                            prop_assert!(now < i.last_seen + keep_min * M, "kept firing past keep_firing_for");
                        }
                    }
                    AlertState::Resolved => {
                        prop_assert!(!present_fps.contains(fp));
                        prop_assert!(now - i.resolved_at.unwrap() <= RESOLVED_RETENTION_MS);
                    }
                    AlertState::Inactive => prop_assert!(false, "inactive instances are not kept"),
                    AlertState::NoData => prop_assert!(false, "a rule without no_data has no nodata instance"),
                }
            }
            for fp in &present_fps {
                prop_assert!(matches!(after(fp), AlertState::Pending | AlertState::Firing));
            }
            state = ev.state;
        }
    }
}
