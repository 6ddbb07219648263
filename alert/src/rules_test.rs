use super::*;

const EXAMPLE: &str = include_str!("../examples/rules.yml");

fn errors(text: &str) -> Vec<String> {
    match parse_rule_file_named("rules.yml", text) {
        Ok(_) => vec![],
        Err(es) => es.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_example_file_loads() {
    let f = parse_rule_file(EXAMPLE).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(f.groups.len(), 2);
    let g = &f.groups[0];
    assert_eq!((g.name.as_str(), g.interval, g.limit, g.line), ("availability", Some(PromDuration(30_000)), 0, 4));
    let Rule::Alerting(down) = &g.rules[0] else { panic!("alerting") };
    assert_eq!(down.name, "InstanceDown");
    assert_eq!(down.expr, "SELECT last(value) FROM up GROUP BY instance, job HAVING last(value) = 0");
    assert_eq!((down.for_duration, down.keep_firing_for, down.line), (PromDuration(60_000), PromDuration(0), 9));
    // The group's labels are added to the rule's.
    let labels: Vec<(&str, &str)> = down.labels.iter().map(|(k, v)| (k.as_str(), v.source())).collect();
    assert_eq!(labels, vec![("severity", "page"), ("team", "sre")]);
    assert_eq!(down.annotations["summary"].source(), "{{ $labels.instance }} of job {{ $labels.job }} is down");

    let api = &f.groups[1];
    assert_eq!((api.interval, api.limit), (Some(PromDuration(60_000)), 100));
    assert_eq!(api.rules.len(), 4);
    let Rule::Alerting(hl) = &api.rules[0] else { panic!("alerting") };
    assert_eq!((hl.for_duration.to_string(), hl.keep_firing_for.to_string()), ("5m".into(), "10m".into()));
    assert!(hl.expr.starts_with("SELECT percentile(latency_ms, 99) FROM http\nWHERE"), "{}", hl.expr);
    let Rule::Recording(rec) = &api.rules[3] else { panic!("recording") };
    assert_eq!(rec.name, "service:latency_ms:p99_5m");
    assert_eq!(rec.labels, crate::labels::labels([("source", "recording")]));
    assert_eq!(
        (0..4).map(|i| api.rule_key(i)).collect::<Vec<_>>(),
        vec!["api/HighLatency", "api/HighLatency#2", "api/ErrorBudgetBurn", "api/service:latency_ms:p99_5m"]
    );
}

#[test]
fn empty_files_have_no_groups() {
    for text in ["", "# nothing yet\n", "groups: []\n", "groups:\n"] {
        assert_eq!(parse_rule_file(text), Ok(RuleFile::default()), "{text:?}");
    }
}

#[test]
fn syntax_and_type_errors_carry_serde_yamls_line() {
    let cases = [
        (
            "groups:\n  - name: api\n    rules:\n      - alert: A\n        expr: SELECT last(x) FROM y\n        fro: 5m\n",
            r#"rules.yml:6: group "api", alert "A": groups[0].rules[0]: unknown field `fro`, expected one of `alert`, `record`, `expr`, `absent`, `for`, `keep_firing_for`, `no_data`, `no_data_for`, `labels`, `annotations`"#,
        ),
        (
            "groups:\n  - name: api\n    rules: [\n",
            "rules.yml:4: did not find expected node content, while parsing a flow node",
        ),
        (
            "groups:\n  - name: api\n    rules:\n      - alert: A\n        labels: [severity]\n",
            r#"rules.yml:5: group "api", alert "A": groups[0].rules[0].labels: invalid type: sequence, expected a map"#,
        ),
        ("grops: []\n", "rules.yml:1: unknown field `grops`, expected `groups`"),
    ];
    for (text, want) in cases {
        assert_eq!(errors(text), vec![want.to_string()], "{text}");
    }
}

#[test]
fn semantic_errors_name_line_group_and_rule() {
    let text = "\
groups:
  - name: api
    interval: 1x
    rules:
      - alert: HighLatency
        expr: SELECT mean(latency) FROM http GROUP BY service
        for: 5x
        keep_firing_for: 1h30
        labels:
          bad-name: x
          severity: '{{ $labels.sev'
        annotations:
          summary: '{{ humanise $value }}'
      - record: bad name
        expr: SELECT mean(x) FROM y
        for: 1m
      - alert: Both
        record: both
        expr: SELECT mean(x) FROM y
      - expr: SELECT mean(x) FROM y
      - alert: NoExpr
      - alert: Raw
        expr: SELECT x FROM y
  - name: api
  - rules: []
  - name: ''
    interval: 0s
";
    let want = [
        r#"rules.yml:3: group "api": interval: invalid duration "1x": unknown unit (use ms, s, m, h, d, w or y)"#,
        r#"rules.yml:7: group "api", alert "HighLatency": for: invalid duration "5x": unknown unit (use ms, s, m, h, d, w or y)"#,
        r#"rules.yml:8: group "api", alert "HighLatency": keep_firing_for: invalid duration "1h30": missing unit (ms, s, m, h, d, w or y)"#,
        r#"rules.yml:10: group "api", alert "HighLatency": labels: invalid label name "bad-name" (use [a-zA-Z_][a-zA-Z0-9_]*)"#,
        r#"rules.yml:11: group "api", alert "HighLatency": labels.severity: template: unclosed action: "{{" at offset 0 has no matching "}}""#,
        r#"rules.yml:13: group "api", alert "HighLatency": annotations.summary: template: function "humanise" not defined (at offset 3)"#,
        r#"rules.yml:14: group "api", record "bad name": record: invalid name "bad name" (use [a-zA-Z_:][a-zA-Z0-9_:]*)"#,
        r#"rules.yml:16: group "api", record "bad name": for: not allowed in a recording rule"#,
        r#"rules.yml:17: group "api", alert "Both": a rule has either alert or record, not both"#,
        r#"rules.yml:20: group "api", rule 4: a rule needs alert (an alerting rule) or record (a recording rule)"#,
        r#"rules.yml:21: group "api", alert "NoExpr": expr: missing (a Pharos query; or absent: a query that alerts when it returns no row)"#,
        r#"rules.yml:23: group "api", alert "Raw": expr: must be an aggregate query (like SELECT last(value) FROM up GROUP BY instance HAVING last(value) = 0)"#,
        r#"rules.yml:24: group "api": group name is used twice (first at line 2)"#,
        "rules.yml:25: group has no name",
        "rules.yml:26: group name must not be empty",
        "rules.yml:27: interval: must be greater than 0",
    ];
    let got = errors(text);
    assert_eq!(got, want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "\n{}", got.join("\n"));
}

#[test]
fn query_errors_point_into_multi_line_exprs() {
    let text = "\
groups:
  - name: db
    rules:
      - alert: Slow
        expr: |
          SELECT meen(query_ms)
          FROM db
          GROUP BY host
      - alert: Unfinished
        expr: |
          SELECT mean(x)
          FROM cpu
          WHERE host = 'a' AND
      - alert: Folded
        expr: >
          SELECT mean(x) FROM cpu
          GROUP BY time(1m)
";
    let got = errors(text);
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].starts_with(
            r#"rules.yml:6: group "db", alert "Slow": expr: error at line 1, column 8: unknown function meen(); known: count, "#
        ),
        "{}",
        got[0]
    );
    // The error shows the expression's line with a caret under the offending word, as `pharosctl query` does.
    assert!(got[0].ends_with("\n  SELECT meen(query_ms)\n         ^"), "{}", got[0]);
    assert!(!got[0].contains("position"), "{}", got[0]);
    assert_eq!(
        got[1],
        "rules.yml:13: group \"db\", alert \"Unfinished\": expr: error at line 3, column 21: unexpected end of query, \
         expected an expression\n  WHERE host = 'a' AND\n                      ^"
    );
    assert_eq!(
        got[2],
        "rules.yml:15: group \"db\", alert \"Folded\": expr: error at line 1, column 34: GROUP BY time(...) is not \
         allowed: each row the query returns is one instance; group by tags only\n  SELECT mean(x) FROM cpu GROUP BY time(1m)\n                                   ^"
    );
}

#[test]
fn more_query_checks() {
    let cases = [
        ("SELECT mean(x) FROM cpu; SELECT mean(y) FROM cpu", "must be exactly one SELECT statement, found 2"),
        ("SHOW MEASUREMENTS", "must be a SELECT statement"),
    ];
    for (q, want) in cases {
        assert_eq!(check_query(q), Err((None, want.to_string())), "{q}");
    }
    assert_eq!(
        check_query(
            "SELECT sum(errors) / sum(requests) FROM http GROUP BY service HAVING sum(errors) / sum(requests) > 0.02"
        ),
        Ok(())
    );
    assert_eq!(check_query("SELECT count(v) FROM up").map_err(|e| e.1), Ok(()));
}

#[test]
fn errors_without_a_file_name() {
    let e = parse_rule_file("groups:\n  - name: a\n    interval: 5x\n").unwrap_err();
    assert_eq!(
        e[0].to_string(),
        r#"line 3: group "a": interval: invalid duration "5x": unknown unit (use ms, s, m, h, d, w or y)"#
    );
    assert_eq!((e[0].line, e[0].group.as_deref(), e[0].rule.clone()), (3, Some("a"), None));
}

#[test]
fn rule_files_round_trip_through_json() {
    let f = parse_rule_file(EXAMPLE).unwrap();
    let j = serde_json::to_string(&f).unwrap();
    let back: RuleFile = serde_json::from_str(&j).unwrap();
    assert_eq!(back, f);
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["groups"][0]["rules"][0]["alerting"]["for_duration"], "1m");
    assert_eq!(v["groups"][1]["rules"][3]["recording"]["name"], "service:latency_ms:p99_5m");
}

#[test]
fn a_yaml_syntax_error_shows_one_line_as_its_own() {
    // libyaml names the error's line and the line where the enclosing mapping began; only the first is the
    // error's line, the second is said in words.
    let text = "groups:\n  - name: api\n    rules:\n      - alert: A\n        expr: SELECT 1\n       for: 5m\n";
    let e = parse_rule_file_named("bad1.yml", text).unwrap_err();
    let shown = e[0].to_string();
    assert!(shown.starts_with(&format!("bad1.yml:{}: ", e[0].line)), "{shown}");
    assert!(!shown.contains(" column "), "one position, not two: {shown}");
}

#[test]
fn no_data_and_no_data_for_are_read_and_checked() {
    let ok = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: SELECT last(x) FROM y GROUP BY h HAVING last(x) > 1\n        no_data: nodata\n        no_data_for: 5m\n";
    let file = parse_rule_file(ok).unwrap();
    let Rule::Alerting(a) = &file.groups[0].rules[0] else { panic!("an alerting rule") };
    assert_eq!((a.no_data, a.no_data_for.ms()), (crate::rules::NoData::NoData, 300_000));
    let bad = ok.replace("no_data: nodata", "no_data: maybe");
    assert_eq!(
        errors(&bad),
        vec![r#"rules.yml:6: group "g", alert "A": no_data: "maybe" is not ok, alerting or nodata"#.to_string()]
    );
    let orphan = ok.replace("        no_data: nodata\n", "");
    assert!(errors(&orphan)[0].contains("no_data_for: needs no_data: alerting or nodata"), "{:?}", errors(&orphan));
    let recording = "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: SELECT last(x) FROM y GROUP BY h\n        no_data: alerting\n";
    assert!(errors(recording)[0].contains("no_data: not allowed in a recording rule"), "{:?}", errors(recording));
}

#[test]
fn absent_rules_are_read_labelled_from_their_where_and_checked() {
    let ok = "groups:\n  - name: g\n    rules:\n      - alert: Gone\n        absent: SELECT count(value) FROM up WHERE job = 'node' AND (env = 'prod' OR env = 'dev') AND 'eu' = region AND time > now() - 5m\n        for: 1m\n";
    let file = parse_rule_file(ok).unwrap();
    let Rule::Alerting(a) = &file.groups[0].rules[0] else { panic!("an alerting rule") };
    // The equalities ANDed at the top, in either order; not those under an OR, not time.
    let want: crate::Labels = [("job", "node"), ("region", "eu")].map(|(k, v)| (k.to_string(), v.to_string())).into();
    assert_eq!(a.absent.as_ref(), Some(&want));
    assert!(a.expr.starts_with("SELECT count(value) FROM up"));
    assert_eq!(a.for_duration.ms(), 60_000);

    let grouped = ok.replace("AND time > now() - 5m", "AND time > now() - 5m GROUP BY host");
    assert!(errors(&grouped)[0].contains("absent: GROUP BY is not allowed"), "{:?}", errors(&grouped));
    let both = ok.replace("        for: 1m\n", "        expr: SELECT last(x) FROM y\n");
    assert!(errors(&both)[0].contains("a rule has either expr or absent"), "{:?}", errors(&both));
    let no_data = ok.replace("        for: 1m\n", "        no_data: nodata\n");
    assert!(errors(&no_data)[0].contains("no_data: not allowed with absent"), "{:?}", errors(&no_data));
    let recording = "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: SELECT last(x) FROM y\n        absent: SELECT last(x) FROM y\n";
    assert!(
        errors(recording).iter().any(|e| e.contains("absent: not allowed in a recording rule")),
        "{:?}",
        errors(recording)
    );
    let bad_query = ok.replace("SELECT count(value)", "SELECT count(value");
    assert!(errors(&bad_query)[0].contains("absent:"), "{:?}", errors(&bad_query));
}

#[test]
fn an_absent_rule_has_one_instance_while_its_query_returns_nothing() {
    use crate::state::{absent_rows, Row};
    let file = parse_rule_file(
        "groups:\n  - name: g\n    rules:\n      - alert: Gone\n        absent: SELECT count(v) FROM up WHERE job = 'node'\n",
    )
    .unwrap();
    let Rule::Alerting(a) = &file.groups[0].rules[0] else { panic!("an alerting rule") };
    let none = absent_rows(a, vec![]);
    assert_eq!(none.len(), 1);
    assert_eq!((none[0].labels.get("job").map(String::as_str), none[0].value), (Some("node"), 1.0));
    assert!(absent_rows(a, vec![Row::new(Default::default(), 3.0)]).is_empty());
    // An ordinary rule's rows pass through.
    let ordinary = crate::rules::AlertingRule { absent: None, ..a.clone() };
    assert_eq!(absent_rows(&ordinary, vec![Row::new(Default::default(), 3.0)]).len(), 1);
}
