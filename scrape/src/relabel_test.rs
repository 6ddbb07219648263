use super::*;
use crate::labels::from_pairs;

fn rules(yaml: &str) -> Vec<RelabelConfig> {
    let raw: Vec<RawRelabelConfig> = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    raw.into_iter().map(|r| RelabelConfig::new(r).unwrap_or_else(|e| panic!("{e}"))).collect()
}

fn rule_error(yaml: &str) -> String {
    let raw: RawRelabelConfig = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    RelabelConfig::new(raw).expect_err("should be invalid").to_string()
}

/// Runs `yaml` over `input`; None when the set is dropped.
fn run(input: &[(&str, &str)], yaml: &str) -> Option<Labels> {
    let mut l = from_pairs(input.iter().copied());
    process(&mut l, &rules(yaml)).then_some(l)
}

fn set(pairs: &[(&str, &str)]) -> Option<Labels> {
    Some(from_pairs(pairs.iter().copied()))
}

// The cases of Prometheus's model/relabel/relabel_test.go, in its order.
#[test]
fn prometheus_relabel_table() {
    let abc = [("a", "foo"), ("b", "bar"), ("c", "baz")];
    assert_eq!(
        run(&abc, "[{source_labels: [a], regex: 'f(.*)', target_label: d, replacement: 'ch${1}-ch${1}'}]"),
        set(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "choo-choo")])
    );
    assert_eq!(
        run(
            &abc,
            "- {source_labels: [a, b], regex: 'f(.*);(.*)r', target_label: a, replacement: 'b${1}${2}m'}\n\
             - {source_labels: [c, a], regex: '(b).*b(.*)ba(.*)', target_label: d, replacement: '$1$2$2$3'}"
        ),
        set(&[("a", "boobam"), ("b", "bar"), ("c", "baz"), ("d", "boooom")])
    );
    assert_eq!(
        run(
            &[("a", "foo")],
            "- {source_labels: [a], regex: '.*o.*', action: drop}\n\
             - {source_labels: [a], regex: 'f(.*)', target_label: d, replacement: 'ch$1-ch$1'}"
        ),
        None
    );
    assert_eq!(run(&[("a", "foo"), ("b", "bar")], "[{source_labels: [a], regex: '.*o.*', action: drop}]"), None);
    assert_eq!(
        run(&[("a", "abc")], "[{source_labels: [a], regex: '.*(b).*', target_label: d}]"),
        set(&[("a", "abc"), ("d", "b")])
    );
    assert_eq!(run(&[("a", "foo")], "[{source_labels: [a], regex: no-match, action: drop}]"), set(&[("a", "foo")]));
    assert_eq!(
        run(&[("a", "foo")], "[{source_labels: [a], regex: 'f|o', action: drop}]"),
        set(&[("a", "foo")]),
        "the regex is anchored: f|o does not match foo"
    );
    assert_eq!(run(&[("a", "foo")], "[{source_labels: [a], regex: no-match, action: keep}]"), None);
    assert_eq!(run(&[("a", "foo")], "[{source_labels: [a], regex: 'f.*', action: keep}]"), set(&[("a", "foo")]));
    assert_eq!(
        run(&[("a", "boo")], "[{source_labels: [a], regex: f, target_label: b, replacement: bar}]"),
        set(&[("a", "boo")]),
        "no match, no replacement"
    );
    assert_eq!(
        run(&abc, "[{source_labels: [c], target_label: d, action: hashmod, modulus: 1000}]"),
        set(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")])
    );
    assert_eq!(
        run(&[("a", "foo\nbar")], "[{source_labels: [a], target_label: b, action: hashmod, modulus: 1000}]"),
        set(&[("a", "foo\nbar"), ("b", "734")])
    );
    assert_eq!(
        run(
            &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
            "[{regex: '(b.*)', replacement: 'bar_${1}', action: labelmap}]"
        ),
        set(&[("a", "foo"), ("b1", "bar"), ("b2", "baz"), ("bar_b1", "bar"), ("bar_b2", "baz")])
    );
    assert_eq!(
        run(
            &[("a", "foo"), ("__meta_my_bar", "aaa"), ("__meta_my_baz", "bbb"), ("__meta_other", "ccc")],
            "[{regex: '__meta_(my.*)', replacement: '${1}', action: labelmap}]"
        ),
        set(&[
            ("a", "foo"),
            ("__meta_my_bar", "aaa"),
            ("__meta_my_baz", "bbb"),
            ("__meta_other", "ccc"),
            ("my_bar", "aaa"),
            ("my_baz", "bbb")
        ])
    );
    assert_eq!(
        run(
            &[("a", "some-name-value")],
            "[{source_labels: [a], regex: 'some-([^-]+)-([^,]+)', replacement: '${2}', target_label: '${1}'}]"
        ),
        set(&[("a", "some-name-value"), ("name", "value")])
    );
    assert_eq!(
        run(
            &[("a", "some-name-value")],
            "[{source_labels: [a], regex: 'some-([^-]+)-([^,]+)', replacement: '${3}', target_label: '${1}'}]"
        ),
        set(&[("a", "some-name-value")]),
        "an empty replacement deletes (here: a label that was never there)"
    );
    assert_eq!(
        run(
            &[("a", "some-name-0")],
            "- {source_labels: [a], regex: 'some-([^-]+)-([^,]+)', replacement: '${1}', target_label: '${3}'}\n\
             - {source_labels: [a], regex: 'some-([^-]+)-([^,]+)', replacement: '${1}', target_label: '${3}'}\n\
             - {source_labels: [a], regex: 'some-([^-]+)(-[^,]+)', replacement: '${1}', target_label: '${3}'}"
        ),
        set(&[("a", "some-name-0")]),
        "targets that expand to invalid names are skipped"
    );
    assert_eq!(
        run(
            &[("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar")],
            "- {source_labels: [__meta_sd_tags], regex: '(?:.+,|^)path:(/[^,]+).*', replacement: '${1}', target_label: __metrics_path__}\n\
             - {source_labels: [__meta_sd_tags], regex: '(?:.+,|^)job:([^,]+).*', replacement: '${1}', target_label: job}\n\
             - {source_labels: [__meta_sd_tags], regex: '(?:.+,|^)label:([^=]+)=([^,]+).*', replacement: '${2}', target_label: '${1}'}"
        ),
        set(&[
            ("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar"),
            ("__metrics_path__", "/secret"),
            ("job", "some-job"),
            ("foo", "bar")
        ])
    );
    assert_eq!(
        run(
            &[("__meta_kubernetes_pod_container_port_name", "foo"), ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091")],
            "- {regex: '^__meta_kubernetes_pod_container_port_name$', action: labeldrop}\n\
             - {source_labels: [__meta_kubernetes_pod_annotation_XXX_metrics_port], regex: '(.+)', replacement: metrics, target_label: __meta_kubernetes_pod_container_port_name}\n\
             - {source_labels: [__meta_kubernetes_pod_container_port_name], regex: '^metrics$', action: keep}"
        ),
        set(&[
            ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
            ("__meta_kubernetes_pod_container_port_name", "metrics")
        ])
    );
    let ab = [("a", "foo"), ("b1", "bar"), ("b2", "baz")];
    assert_eq!(run(&ab, "[{regex: '(b.*)', action: labelkeep}]"), set(&[("b1", "bar"), ("b2", "baz")]));
    assert_eq!(run(&ab, "[{regex: '(b.*)', action: labeldrop}]"), set(&[("a", "foo")]));
    assert_eq!(
        run(
            &[("foo", "bAr123Foo")],
            "- {source_labels: [foo], action: uppercase, target_label: foo_uppercase}\n\
             - {source_labels: [foo], action: lowercase, target_label: foo_lowercase}"
        ),
        set(&[("foo", "bAr123Foo"), ("foo_lowercase", "bar123foo"), ("foo_uppercase", "BAR123FOO")])
    );
    let ports = [("__tmp_port", "1234"), ("__port1", "1234"), ("__port2", "5678")];
    assert_eq!(run(&ports, "[{source_labels: [__tmp_port], action: keepequal, target_label: __port1}]"), set(&ports));
    assert_eq!(run(&ports, "[{source_labels: [__tmp_port], action: dropequal, target_label: __port1}]"), None);
    assert_eq!(run(&ports, "[{source_labels: [__tmp_port], action: dropequal, target_label: __port2}]"), set(&ports));
    assert_eq!(run(&ports, "[{source_labels: [__tmp_port], action: keepequal, target_label: __port2}]"), None);
}

// Examples from the Prometheus documentation and common practice.
#[test]
fn documentation_examples() {
    // Default action and regex: copy a meta label.
    assert_eq!(
        run(&[("__meta_dns_name", "db.example.com")], "[{source_labels: [__meta_dns_name], target_label: dns}]"),
        set(&[("__meta_dns_name", "db.example.com"), ("dns", "db.example.com")])
    );
    // The classic "address and port from annotations" rewrite, with the default separator.
    assert_eq!(
        run(
            &[("__address__", "10.0.0.1:8080"), ("__meta_port", "9102")],
            "[{source_labels: [__address__, __meta_port], regex: '([^:]+)(?::\\d+)?;(\\d+)', replacement: '$1:$2', target_label: __address__}]"
        ),
        set(&[("__address__", "10.0.0.1:9102"), ("__meta_port", "9102")])
    );
    // A custom separator.
    assert_eq!(
        run(&[("a", "x"), ("b", "y")], "[{source_labels: [a, b], separator: '-', target_label: c}]"),
        set(&[("a", "x"), ("b", "y"), ("c", "x-y")])
    );
    // Sharding with hashmod and keep.
    let shard = "- {source_labels: [__address__], modulus: 4, target_label: __tmp_hash, action: hashmod}\n\
                 - {source_labels: [__tmp_hash], regex: '^1$', action: keep}";
    let kept: Vec<usize> =
        (0..40).filter(|i| run(&[("__address__", &format!("10.0.0.{i}:9100"))], shard).is_some()).collect();
    assert!(!kept.is_empty() && kept.len() < 40, "{kept:?}");
    // Dropping a metric by name (metric_relabel_configs).
    assert_eq!(
        run(&[("__name__", "go_gc_duration_seconds")], "[{source_labels: [__name__], regex: 'go_.*', action: drop}]"),
        None
    );
    // An empty replacement deletes the target label.
    assert_eq!(run(&[("a", "1"), ("b", "2")], "[{target_label: b, replacement: ''}]"), set(&[("a", "1")]));
    // Missing source labels read as empty strings: the default regex matches and $1 is empty.
    assert_eq!(run(&[("a", "1")], "[{source_labels: [nope], target_label: a}]"), set(&[]));
    // Named groups.
    assert_eq!(
        run(&[("host", "web-7")], "[{source_labels: [host], regex: '(?P<role>[a-z]+)-(?P<n>\\d+)', target_label: role, replacement: '${role}'}]"),
        set(&[("host", "web-7"), ("role", "web")])
    );
    // $1x is the group named "1x" (empty), as in Go, while ${1}x is group 1 then "x".
    assert_eq!(
        run(&[("a", "v")], "[{source_labels: [a], regex: '(.)', target_label: b, replacement: '${1}x$1x'}]"),
        set(&[("a", "v"), ("b", "vx")])
    );
    // Actions are case-insensitive.
    assert_eq!(run(&[("a", "1")], "[{source_labels: [a], regex: '1', action: DROP}]"), None);
}

#[test]
fn validation_messages_match_prometheus() {
    let cases: &[(&str, &str)] = &[
        ("{action: nope}", r#"unknown relabel action "nope""#),
        ("{action: replace}", "relabel configuration for replace action requires 'target_label' value"),
        ("{source_labels: [a]}", "relabel configuration for replace action requires 'target_label' value"),
        ("{action: lowercase}", "relabel configuration for lowercase action requires 'target_label' value"),
        ("{action: lowercase, target_label: '${3}'}", r#""${3}" is invalid 'target_label' for lowercase action"#),
        ("{action: replace, target_label: '0${3}'}", r#""0${3}" is invalid 'target_label' for replace action"#),
        ("{action: replace, target_label: '-${3}'}", r#""-${3}" is invalid 'target_label' for replace action"#),
        ("{action: replace, target_label: 'a-b'}", r#""a-b" is invalid 'target_label' for replace action"#),
        ("{action: hashmod, target_label: x}", "relabel configuration for hashmod requires non-zero modulus"),
        ("{action: hashmod, target_label: '$1', modulus: 2}", r#""$1" is invalid 'target_label' for hashmod action"#),
        ("{action: uppercase, target_label: x, replacement: y}", "'replacement' can not be set for uppercase action"),
        ("{action: labelmap, replacement: '-'}", r#""-" is invalid 'replacement' for labelmap action"#),
        (
            "{action: keepequal, target_label: x, regex: a}",
            "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
        ),
        (
            "{action: dropequal, target_label: x, separator: ','}",
            "dropequal action requires only 'source_labels' and `target_label`, and no other fields",
        ),
        (
            "{action: labeldrop, regex: a, source_labels: [b]}",
            "labeldrop action requires only 'regex', and no other fields",
        ),
        (
            "{action: labelkeep, regex: a, target_label: b}",
            "labelkeep action requires only 'regex', and no other fields",
        ),
        ("{source_labels: ['a-b'], target_label: x}", r#""a-b" is not a valid label name"#),
        ("{regex: '(', target_label: x}", r#"invalid regex "(": error: unclosed group"#),
    ];
    for (yaml, want) in cases {
        assert_eq!(&rule_error(yaml), want, "{yaml}");
    }
    let e = RelabelConfig::new(serde_yaml::from_str("{regex: '(', target_label: x}").unwrap()).unwrap_err();
    assert_eq!(e.field, Some("regex"));
    assert!(serde_yaml::from_str::<RawRelabelConfig>("{bogus: 1}")
        .unwrap_err()
        .to_string()
        .contains("unknown field `bogus`"));
}

#[test]
fn template_validity_matches_prometheus_regex() {
    let cases = [
        ("-label", false),
        ("label", true),
        ("label${1}", true),
        ("${1}label", true),
        ("${1}", true),
        ("${", false),
        ("$", false),
        ("${}", false),
        ("foo${", false),
        ("$1", true),
        ("asd$2asd", true),
        ("-foo${1}bar-", false),
        ("_${1}_", true),
        ("foo${bar}foo", true),
        ("1abc", false),
    ];
    for (s, valid) in cases {
        assert_eq!(is_valid_template(s), valid, "{s}");
    }
}

#[test]
fn equality_compares_the_regex_text() {
    let a = rules("[{source_labels: [a], regex: 'x+', target_label: b}]");
    let b = rules("[{source_labels: [a], regex: 'x+', target_label: b}]");
    let c = rules("[{source_labels: [a], regex: 'x*', target_label: b}]");
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a[0].regex_text(), "x+");
}
