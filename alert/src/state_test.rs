use super::*;
use crate::duration::PromDuration;
use crate::labels::labels;
use crate::template::Template;
use AlertState::{Firing, Inactive, Pending, Resolved};

const M: i64 = 60_000;

fn rule(for_ms: i64, keep_ms: i64) -> AlertingRule {
    AlertingRule {
        name: "Down".into(),
        expr: "SELECT last(up) FROM up GROUP BY instance HAVING last(up) = 0".into(),
        for_duration: PromDuration(for_ms),
        keep_firing_for: PromDuration(keep_ms),
        no_data: crate::rules::NoData::Ok,
        no_data_for: PromDuration::ZERO,
        absent: None,
        labels: [("severity".to_string(), Template::parse("page").unwrap())].into(),
        annotations: [("summary".to_string(), Template::parse("{{ $labels.instance }} at {{ $value }}").unwrap())]
            .into(),
        line: 1,
    }
}

fn rows(instances: &[&str]) -> Vec<Row> {
    instances.iter().map(|i| Row::new(labels([("instance", *i)]), 1.0)).collect()
}

/// One evaluation: its time, the instances its query returned, the transitions expected (by instance
/// label) and every instance's state afterwards.
struct Step<'a> {
    at: i64,
    rows: &'a [&'a str],
    transitions: &'a [(&'a str, AlertState, AlertState)],
    states: &'a [(&'a str, AlertState)],
}

fn run(name: &str, rule: &AlertingRule, steps: &[Step]) -> RuleState {
    let mut state = RuleState::default();
    for (i, s) in steps.iter().enumerate() {
        let ev = evaluate(rule, &state, &rows(s.rows), &EvalContext::at(s.at)).unwrap();
        let mut got: Vec<(String, AlertState, AlertState)> =
            ev.transitions.iter().map(|t| (t.labels["instance"].clone(), t.from, t.to)).collect();
        got.sort();
        let mut want: Vec<(String, AlertState, AlertState)> =
            s.transitions.iter().map(|(n, f, t)| (n.to_string(), *f, *t)).collect();
        want.sort();
        assert_eq!(got, want, "{name}: step {i} at {}m: transitions", s.at as f64 / M as f64);
        let mut states: Vec<(String, AlertState)> =
            ev.state.instances.values().map(|x| (x.labels["instance"].clone(), x.state)).collect();
        states.sort();
        let want_states: Vec<(String, AlertState)> = s.states.iter().map(|(n, st)| (n.to_string(), *st)).collect();
        assert_eq!(states, want_states, "{name}: step {i} at {}m: states", s.at as f64 / M as f64);
        for t in &ev.transitions {
            assert_eq!(t.at, s.at);
            assert_eq!(t.fingerprint, crate::labels::fingerprint(&t.labels));
        }
        assert_eq!(ev.state.last_eval, Some(s.at));
        state = ev.state;
    }
    state
}

#[test]
fn pending_then_firing_then_resolved_then_dropped() {
    let st = run(
        "lifecycle",
        &rule(5 * M, 0),
        &[
            Step { at: 0, rows: &["a"], transitions: &[("a", Inactive, Pending)], states: &[("a", Pending)] },
            Step { at: M, rows: &["a"], transitions: &[], states: &[("a", Pending)] },
            Step { at: 4 * M + 59_999, rows: &["a"], transitions: &[], states: &[("a", Pending)] },
            Step { at: 5 * M, rows: &["a"], transitions: &[("a", Pending, Firing)], states: &[("a", Firing)] },
            Step { at: 6 * M, rows: &["a"], transitions: &[], states: &[("a", Firing)] },
            Step { at: 7 * M, rows: &[], transitions: &[("a", Firing, Resolved)], states: &[("a", Resolved)] },
            // Kept 15 minutes (inclusive), then dropped.
            Step { at: 22 * M, rows: &[], transitions: &[], states: &[("a", Resolved)] },
            Step { at: 22 * M + 1, rows: &[], transitions: &[("a", Resolved, Inactive)], states: &[] },
        ],
    );
    assert!(st.instances.is_empty());
}

#[test]
fn instance_fields_over_a_lifecycle() {
    let r = rule(5 * M, 0);
    let s0 = evaluate(&r, &RuleState::default(), &rows(&["a"]), &EvalContext::at(1000)).unwrap().state;
    let s1 = evaluate(&r, &s0, &rows(&["a"]), &EvalContext::at(1000 + 5 * M)).unwrap().state;
    let s2 = evaluate(&r, &s1, &[], &EvalContext::at(1000 + 6 * M)).unwrap().state;
    let i = s2.instances.values().next().unwrap();
    assert_eq!(
        (i.state, i.active_since, i.last_seen, i.fired_at, i.resolved_at),
        (Resolved, 1000, 1000 + 5 * M, Some(1000 + 5 * M), Some(1000 + 6 * M))
    );
    assert_eq!(i.labels, labels([("alertname", "Down"), ("instance", "a"), ("severity", "page")]));
    assert_eq!(i.annotations, labels([("summary", "a at 1")]));
}

#[test]
fn for_zero_fires_at_once() {
    run(
        "for: 0",
        &rule(0, 0),
        &[
            Step { at: 0, rows: &["a"], transitions: &[("a", Inactive, Firing)], states: &[("a", Firing)] },
            Step { at: M, rows: &[], transitions: &[("a", Firing, Resolved)], states: &[("a", Resolved)] },
            // Back while still kept as resolved: a new episode, firing at once again.
            Step { at: 2 * M, rows: &["a"], transitions: &[("a", Resolved, Firing)], states: &[("a", Firing)] },
        ],
    );
}

#[test]
fn flapping_around_the_for_boundary() {
    let st = run(
        "flapping",
        &rule(3 * M, 0),
        &[
            Step { at: 0, rows: &["a"], transitions: &[("a", Inactive, Pending)], states: &[("a", Pending)] },
            Step { at: M, rows: &["a"], transitions: &[], states: &[("a", Pending)] },
            Step { at: 2 * M, rows: &["a"], transitions: &[], states: &[("a", Pending)] },
            // Gone one evaluation before `for` is reached: dropped silently.
            Step { at: 3 * M - 1, rows: &[], transitions: &[("a", Pending, Inactive)], states: &[] },
            // Back: `for` starts over.
            Step { at: 3 * M, rows: &["a"], transitions: &[("a", Inactive, Pending)], states: &[("a", Pending)] },
            Step { at: 5 * M, rows: &["a"], transitions: &[], states: &[("a", Pending)] },
            Step { at: 6 * M, rows: &["a"], transitions: &[("a", Pending, Firing)], states: &[("a", Firing)] },
            // Flaps while firing: resolves, and comes back pending (it does not fire again at once).
            Step { at: 7 * M, rows: &[], transitions: &[("a", Firing, Resolved)], states: &[("a", Resolved)] },
            Step { at: 8 * M, rows: &["a"], transitions: &[("a", Resolved, Pending)], states: &[("a", Pending)] },
            Step { at: 11 * M, rows: &["a"], transitions: &[("a", Pending, Firing)], states: &[("a", Firing)] },
        ],
    );
    let i = st.instances.values().next().unwrap();
    assert_eq!((i.active_since, i.fired_at, i.resolved_at), (8 * M, Some(11 * M), None));
}

#[test]
fn dropped_pending_instances_do_not_notify() {
    let r = rule(5 * M, 0);
    let s0 = evaluate(&r, &RuleState::default(), &rows(&["a"]), &EvalContext::at(0)).unwrap().state;
    let ev = evaluate(&r, &s0, &[], &EvalContext::at(M)).unwrap();
    assert_eq!(ev.transitions.len(), 1);
    assert_eq!(
        (ev.transitions[0].from, ev.transitions[0].to, ev.transitions[0].notifies()),
        (Pending, Inactive, false)
    );
}

#[test]
fn keep_firing_for_holds_a_vanished_alert() {
    run(
        "keep_firing_for",
        &rule(0, 10 * M),
        &[
            Step {
                at: 0,
                rows: &["a", "b"],
                transitions: &[("a", Inactive, Firing), ("b", Inactive, Firing)],
                states: &[("a", Firing), ("b", Firing)],
            },
            Step { at: M, rows: &["b"], transitions: &[], states: &[("a", Firing), ("b", Firing)] },
            Step { at: 10 * M - 1, rows: &["b"], transitions: &[], states: &[("a", Firing), ("b", Firing)] },
            // last_seen (0) + keep_firing_for (10m) reached: resolved.
            Step {
                at: 10 * M,
                rows: &["b"],
                transitions: &[("a", Firing, Resolved)],
                states: &[("a", Resolved), ("b", Firing)],
            },
            // b was last seen at 10m; it comes back at 15m, which resets the clock.
            Step { at: 15 * M, rows: &[], transitions: &[], states: &[("a", Resolved), ("b", Firing)] },
            Step { at: 16 * M, rows: &["b"], transitions: &[], states: &[("a", Resolved), ("b", Firing)] },
            Step { at: 25 * M, rows: &[], transitions: &[], states: &[("a", Resolved), ("b", Firing)] },
            Step {
                at: 26 * M,
                rows: &[],
                transitions: &[("a", Resolved, Inactive), ("b", Firing, Resolved)],
                states: &[("b", Resolved)],
            },
        ],
    );
}

#[test]
fn keep_firing_for_does_not_hold_pending_alerts() {
    run(
        "keep pending",
        &rule(5 * M, 10 * M),
        &[
            Step { at: 0, rows: &["a"], transitions: &[("a", Inactive, Pending)], states: &[("a", Pending)] },
            Step { at: M, rows: &[], transitions: &[("a", Pending, Inactive)], states: &[] },
        ],
    );
}

#[test]
fn values_and_annotations_follow_the_rows() {
    let r = rule(0, 0);
    let mut state = RuleState::default();
    for (t, v, want) in [(0, 1.5, "a at 1.5"), (M, 2500.0, "a at 2500"), (2 * M, 0.25, "a at 0.25")] {
        let ev = evaluate(&r, &state, &[Row::new(labels([("instance", "a")]), v)], &EvalContext::at(t)).unwrap();
        let i = ev.state.instances.values().next().unwrap();
        assert_eq!((i.value, i.annotations["summary"].as_str(), i.state), (v, want, Firing));
        assert_eq!(ev.transitions.len(), usize::from(t == 0), "only the first evaluation changes state");
        state = ev.state;
    }
}

#[test]
fn many_instances() {
    let r = rule(0, 0);
    let names: Vec<String> = (0..200).map(|i| format!("host-{i:03}")).collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let ev = evaluate(&r, &RuleState::default(), &rows(&all), &EvalContext::at(0)).unwrap();
    assert_eq!(ev.transitions.len(), 200);
    assert!(ev.transitions.windows(2).all(|w| w[0].fingerprint < w[1].fingerprint), "in fingerprint order");
    assert!(ev.transitions.iter().all(|t| (t.from, t.to) == (Inactive, Firing)));
    let ev = evaluate(&r, &ev.state, &rows(&all[..150]), &EvalContext::at(M)).unwrap();
    assert_eq!(ev.transitions.len(), 50);
    let mut resolved: Vec<&str> = ev.transitions.iter().map(|t| t.labels["instance"].as_str()).collect();
    resolved.sort();
    assert_eq!(resolved, all[150..].to_vec());
    assert_eq!(ev.state.in_state(Firing).count(), 150);
    assert_eq!(ev.state.in_state(Resolved).count(), 50);
    assert_eq!(ev.state.alerts("").len(), 200);
}

#[test]
fn changed_labels_are_a_different_instance() {
    let r = rule(0, 0);
    let v1 = [Row::new(labels([("instance", "a"), ("version", "1")]), 1.0)];
    let v2 = [Row::new(labels([("instance", "a"), ("version", "2")]), 1.0)];
    let s = evaluate(&r, &RuleState::default(), &v1, &EvalContext::at(0)).unwrap().state;
    let ev = evaluate(&r, &s, &v2, &EvalContext::at(M)).unwrap();
    let t: Vec<(&str, AlertState, AlertState)> =
        ev.transitions.iter().map(|t| (t.labels["version"].as_str(), t.from, t.to)).collect();
    let mut t = t;
    t.sort();
    assert_eq!(t, vec![("1", Firing, Resolved), ("2", Inactive, Firing)]);
}

#[test]
fn a_new_leader_continues_for_from_the_committed_state() {
    let r = rule(5 * M, 0);
    let s = evaluate(&r, &RuleState::default(), &rows(&["a"]), &EvalContext::at(0)).unwrap().state;
    let s = evaluate(&r, &s, &rows(&["a"]), &EvalContext::at(3 * M)).unwrap().state;
    // The old leader stops; the new one reads the committed state (JSON here) and goes on.
    let committed = serde_json::to_string(&s).unwrap();
    let restored: RuleState = serde_json::from_str(&committed).unwrap();
    assert_eq!(restored, s);
    let ev = evaluate(&r, &restored, &rows(&["a"]), &EvalContext::at(5 * M)).unwrap();
    assert_eq!(ev.transitions.iter().map(|t| (t.from, t.to)).collect::<Vec<_>>(), vec![(Pending, Firing)]);
    assert_eq!(ev.state.instances.values().next().unwrap().active_since, 0);
}

#[test]
fn labels_from_rows_templates_and_alertname() {
    let mut r = rule(0, 0);
    r.labels = [
        ("owner", "team-{{ $labels.team }}"),
        ("team", "{{ $labels.missing }}"),
        ("alertname", "Overridden"),
        ("level", "{{ humanize $value }}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Template::parse(v).unwrap()))
    .collect();
    let row = Row::new(labels([("instance", "a"), ("team", "db"), ("empty", "")]), 1500.0);
    let ev = evaluate(&r, &RuleState::default(), &[row], &EvalContext::at(0)).unwrap();
    let i = ev.state.instances.values().next().unwrap();
    // `team` rendered empty: removed; `empty` tag dropped; alertname is the rule's.
    assert_eq!(i.labels, labels([("alertname", "Down"), ("instance", "a"), ("level", "1.5k"), ("owner", "team-db")]));
}

#[test]
fn external_labels_and_url_reach_templates() {
    let mut r = rule(0, 0);
    r.annotations =
        [("link".to_string(), Template::parse("{{ $externalURL }}/alerts?c={{ $externalLabels.cluster }}").unwrap())]
            .into();
    let ext = labels([("cluster", "eu-1")]);
    let ctx = EvalContext { now_ms: 0, limit: 0, external_labels: &ext, external_url: "https://pharos.example" };
    let ev = evaluate(&r, &RuleState::default(), &rows(&["a"]), &ctx).unwrap();
    assert_eq!(ev.state.instances.values().next().unwrap().annotations["link"], "https://pharos.example/alerts?c=eu-1");
}

#[test]
fn rows_that_collide_after_labelling_are_refused() {
    let mut r = rule(0, 0);
    r.labels.insert("instance".into(), Template::parse("all").unwrap());
    let err = evaluate(&r, &RuleState::default(), &rows(&["a", "b"]), &EvalContext::at(0)).unwrap_err();
    assert_eq!(err, EvalError::DuplicateLabels(r#"{alertname="Down", instance="all", severity="page"}"#.into()));
    assert_eq!(
        err.to_string(),
        r#"two rows have the same labels {alertname="Down", instance="all", severity="page"} once the rule's labels are applied"#
    );
}

#[test]
fn the_groups_limit() {
    let r = rule(5 * M, 0);
    let mut ctx = EvalContext::at(0);
    ctx.limit = 2;
    assert!(evaluate(&r, &RuleState::default(), &rows(&["a", "b"]), &ctx).is_ok());
    assert_eq!(
        evaluate(&r, &RuleState::default(), &rows(&["a", "b", "c"]), &ctx),
        Err(EvalError::LimitExceeded { limit: 2, count: 3 })
    );
}

#[test]
fn non_finite_values_survive_json() {
    let r = rule(0, 0);
    let rs = [
        Row::new(labels([("instance", "nan")]), f64::NAN),
        Row::new(labels([("instance", "inf")]), f64::INFINITY),
        Row::new(labels([("instance", "ninf")]), f64::NEG_INFINITY),
    ];
    let s = evaluate(&r, &RuleState::default(), &rs, &EvalContext::at(0)).unwrap().state;
    let j = serde_json::to_value(&s).unwrap();
    let values: Vec<String> =
        s.instances.keys().map(|fp| j["instances"][fp.to_string()]["value"].to_string()).collect();
    let mut values = values;
    values.sort();
    assert_eq!(values, vec!["\"+Inf\"", "\"-Inf\"", "\"NaN\""]);
    let back: RuleState = serde_json::from_value(j).unwrap();
    let v: Vec<String> = back.instances.values().map(|i| crate::gofmt::format_g(i.value, None)).collect();
    let mut v = v;
    v.sort();
    assert_eq!(v, vec!["+Inf", "-Inf", "NaN"]);
}

#[test]
fn transitions_that_notify_and_their_keys() {
    let t = |from, to| Transition { fingerprint: 0xbeef, labels: Labels::new(), from, to, at: 0, value: 0.0 };
    let cases = [
        (Inactive, Pending, false),
        (Inactive, Firing, true),
        (Pending, Firing, true),
        (Pending, Inactive, false),
        (Firing, Resolved, true),
        (Resolved, Pending, false),
        (Resolved, Firing, true),
        (Resolved, Inactive, false),
    ];
    for (from, to, want) in cases {
        assert_eq!(t(from, to).notifies(), want, "{from} -> {to}");
    }
    assert_eq!(t(Pending, Firing).dedup_key("api/Down"), "api/Down/000000000000beef/firing");
    assert_eq!(t(Firing, Resolved).dedup_key("api/Down"), "api/Down/000000000000beef/resolved");
}

#[test]
fn instances_as_alerts() {
    let r = rule(5 * M, 0);
    let s = evaluate(&r, &RuleState::default(), &rows(&["a"]), &EvalContext::at(0)).unwrap().state;
    assert_eq!(s.alerts("http://x").len(), 0, "pending alerts are not sent");
    let s = evaluate(&r, &s, &rows(&["a"]), &EvalContext::at(5 * M)).unwrap().state;
    let a = &s.alerts("http://x/graph")[0];
    assert_eq!(
        (a.starts_at, a.ends_at, a.generator_url.as_str(), a.is_firing()),
        (5 * M, None, "http://x/graph", true)
    );
    let s = evaluate(&r, &s, &[], &EvalContext::at(7 * M)).unwrap().state;
    let a = &s.alerts("")[0];
    assert_eq!((a.starts_at, a.ends_at, a.status()), (5 * M, Some(7 * M), crate::alert::AlertStatus::Resolved));
}

#[test]
fn recording_rules_write_samples() {
    let r = RecordingRule {
        name: "svc:lat:mean".into(),
        expr: String::new(),
        labels: labels([("source", "rule"), ("drop", "")]),
        line: 1,
    };
    let rs = [Row::new(labels([("service", "api"), ("drop", "x")]), 12.5), Row::new(labels([("service", "web")]), 3.0)];
    let got = record(&r, &rs).unwrap();
    assert_eq!(
        got,
        vec![
            Sample {
                measurement: "svc:lat:mean".into(),
                tags: labels([("service", "api"), ("source", "rule")]),
                value: 12.5
            },
            Sample {
                measurement: "svc:lat:mean".into(),
                tags: labels([("service", "web"), ("source", "rule")]),
                value: 3.0
            },
        ]
    );
    let dup = [Row::new(labels([("service", "api"), ("drop", "1")]), 1.0), Row::new(labels([("service", "api")]), 2.0)];
    assert_eq!(record(&r, &dup), Err(EvalError::DuplicateLabels(r#"{service="api", source="rule"}"#.into())));
}

#[test]
fn rows_from_query_series() {
    use pharos_query::{Series, Value};
    let series = vec![
        Series {
            name: "up".into(),
            tags: vec![("instance".into(), "a".into()), ("zone".into(), "".into())],
            columns: vec!["time".into(), "last".into(), "other".into()],
            values: vec![vec![Value::Time(0), Value::Float(0.0), Value::Float(9.0)]],
        },
        Series {
            name: "up".into(),
            tags: vec![("instance".into(), "b".into())],
            columns: vec!["time".into(), "count".into()],
            values: vec![vec![Value::Time(0), Value::Int(3)], vec![Value::Time(0), Value::Null]],
        },
        Series {
            name: "up".into(),
            tags: vec![],
            columns: vec!["time".into(), "ok".into()],
            values: vec![vec![Value::Time(0), Value::Bool(true)]],
        },
    ];
    assert_eq!(
        rows_from_series(&series),
        vec![
            Row::new(labels([("instance", "a")]), 0.0),
            Row::new(labels([("instance", "b")]), 3.0),
            Row::new(Labels::new(), 1.0),
        ]
    );
}

// ---- no data ----

fn no_data_rule(mode: crate::rules::NoData, for_ms: i64, no_data_for_ms: i64) -> AlertingRule {
    AlertingRule { no_data: mode, no_data_for: PromDuration(no_data_for_ms), ..rule(for_ms, 0) }
}

/// One evaluation with the rule's rows (its condition held for these instances) and data rows (these had
/// data).
fn eval_data(r: &AlertingRule, prev: &RuleState, now: i64, hits: &[&str], data: &[&str]) -> Evaluation {
    evaluate_with_data(r, prev, &rows(hits), Some(&rows(data)), &EvalContext::at(now)).unwrap()
}

fn states(e: &Evaluation) -> Vec<(String, AlertState)> {
    let mut v: Vec<_> = e
        .state
        .instances
        .values()
        .map(|i| {
            let tag = if i.labels.get("alertstate").is_some() { "/nodata" } else { "" };
            (format!("{}{tag}", i.labels["instance"]), i.state)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_series_whose_data_stops_goes_nodata_after_no_data_for_and_resolves_when_data_returns() {
    let r = no_data_rule(crate::rules::NoData::NoData, 3 * M, 2 * M);
    // a and b have data, neither meets the condition.
    let e = eval_data(&r, &RuleState::default(), 0, &[], &["a", "b"]);
    assert!(e.state.instances.is_empty() && e.state.data_seen.len() == 2);
    // b's data stops: nothing for a minute (no_data_for is 2 minutes) ...
    let e = eval_data(&r, &e.state, M, &[], &["a"]);
    assert!(e.state.instances.is_empty(), "{:?}", states(&e));
    // ... then nodata, at once (no `for` on top), notified, labelled alertstate="nodata".
    let e = eval_data(&r, &e.state, 2 * M, &[], &["a"]);
    assert_eq!(states(&e), vec![("b/nodata".into(), AlertState::NoData)]);
    let t = &e.transitions[0];
    assert!(t.notifies() && t.to == AlertState::NoData && t.labels["alertstate"] == "nodata", "{t:?}");
    let alert = e.state.instances.values().next().unwrap().to_alert("").unwrap();
    assert_eq!(alert.ends_at, None, "an active alert for receivers");
    assert!(e.state.instances.values().next().unwrap().value.is_nan());
    // Stays while there is no data; resolves (notified) when data returns.
    let e = eval_data(&r, &e.state, 5 * M, &[], &["a"]);
    assert_eq!(states(&e), vec![("b/nodata".into(), AlertState::NoData)]);
    assert!(e.transitions.is_empty());
    let e = eval_data(&r, &e.state, 6 * M, &[], &["a", "b"]);
    assert_eq!(states(&e), vec![("b/nodata".into(), AlertState::Resolved)]);
    assert!(e.transitions[0].notifies() && e.transitions[0].from == AlertState::NoData);
}

#[test]
fn no_data_alerting_fires_the_rule_itself_and_ok_keeps_prometheus_behaviour() {
    // alerting: the missing series fires as the rule's own alert (no alertstate label), value NaN.
    let r = no_data_rule(crate::rules::NoData::Alerting, 5 * M, M);
    let e = eval_data(&r, &RuleState::default(), 0, &[], &["a"]);
    let e = eval_data(&r, &e.state, M, &[], &[]);
    assert_eq!(states(&e), vec![("a".into(), AlertState::Firing)]);
    // ok (the default): a series whose data stops makes no instance, and nothing is remembered.
    let r = no_data_rule(crate::rules::NoData::Ok, 0, 0);
    let e = eval_data(&r, &RuleState::default(), 0, &[], &["a"]);
    let e = eval_data(&r, &e.state, 10 * M, &[], &[]);
    assert!(e.state.instances.is_empty() && e.state.data_seen.is_empty());
}

#[test]
fn a_firing_series_whose_data_stops_resolves_then_goes_nodata_and_a_failed_data_query_changes_nothing() {
    let r = no_data_rule(crate::rules::NoData::NoData, 0, M);
    let e = eval_data(&r, &RuleState::default(), 0, &["a"], &["a"]);
    assert_eq!(states(&e), vec![("a".into(), AlertState::Firing)]);
    // Its data stops: the alert on its condition resolves (no row); a minute later, nodata.
    let e = eval_data(&r, &e.state, M / 2, &[], &[]);
    assert_eq!(states(&e), vec![("a".into(), AlertState::Resolved)]);
    // The data query failed this time: the series seen are kept, nothing new is decided.
    let kept = evaluate_with_data(&r, &e.state, &[], None, &EvalContext::at(M)).unwrap();
    assert_eq!(kept.state.data_seen, e.state.data_seen);
    let e = eval_data(&r, &e.state, M, &[], &[]);
    assert_eq!(states(&e), vec![("a".into(), AlertState::Resolved), ("a/nodata".into(), AlertState::NoData)]);
    // A failed data query while a series is in nodata changes nothing either (no resolve, no page).
    let kept = evaluate_with_data(&r, &e.state, &[], None, &EvalContext::at(2 * M)).unwrap();
    assert!(kept.transitions.is_empty(), "{:?}", kept.transitions);
    assert_eq!(
        format!("{:?}", kept.state),
        format!("{:?}", e.state),
        "the state is kept (NaN values: compared as text)"
    );
    // A day without data: forgotten, and the nodata instance resolves.
    let e = eval_data(&r, &e.state, M + crate::state::NO_DATA_FORGET_MS + 1, &[], &[]);
    assert!(e.state.data_seen.is_empty());
    assert!(states(&e).contains(&("a/nodata".into(), AlertState::Resolved)), "{:?}", states(&e));
}

#[test]
fn a_row_of_the_rule_counts_as_data_even_when_the_data_query_missed_it() {
    // The two queries run a moment apart: the condition's row for a is there, the data query's is not.
    let r = no_data_rule(crate::rules::NoData::Alerting, 0, 0);
    let e = eval_data(&r, &RuleState::default(), 0, &["a"], &["a"]);
    let e = eval_data(&r, &e.state, M, &["a"], &[]);
    assert_eq!(states(&e), vec![("a".into(), AlertState::Firing)], "one instance, no duplicate labels");
}
