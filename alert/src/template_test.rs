use super::*;
use crate::labels::labels;

fn render(src: &str, value: f64) -> String {
    let l = labels([("instance", "db-1:9100"), ("job", "node"), ("env", "prod")]);
    let ext = labels([("cluster", "eu-1")]);
    let data = TemplateData { labels: &l, value, external_labels: &ext, external_url: "https://pharos.example" };
    Template::parse(src).unwrap_or_else(|e| panic!("{src}: {e}")).render(&data).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn parse_err(src: &str) -> String {
    Template::parse(src).expect_err(src).message
}

#[test]
fn renders_labels_value_and_text() {
    let cases: [(&str, f64, &str); 14] = [
        ("plain text", 1.0, "plain text"),
        ("", 1.0, ""),
        ("{{ $labels.instance }}", 1.0, "db-1:9100"),
        ("Instance {{ $labels.instance }} of {{$labels.job}} is down", 1.0, "Instance db-1:9100 of node is down"),
        ("{{ $value }}", 0.25, "0.25"),
        ("{{ $value }}", 3.0, "3"),
        ("{{ $value }}", 1234567.0, "1.234567e+06"),
        ("[{{ $labels.missing }}]", 1.0, "[]"),
        ("{{ .Labels.job }}={{ .Value }}", 2.5, "node=2.5"),
        ("{{ $.Labels.env }}", 1.0, "prod"),
        ("{{ $externalLabels.cluster }} {{ $externalURL }}", 1.0, "eu-1 https://pharos.example"),
        ("{{ $labels }}", 1.0, "map[env:prod instance:db-1:9100 job:node]"),
        ("a {{/* a comment */}}b", 1.0, "a b"),
        ("{{ \"}}\" }}", 1.0, "}}"),
    ];
    for (src, v, want) in cases {
        assert_eq!(render(src, v), want, "{src}");
    }
}

#[test]
fn functions_and_pipelines() {
    let cases: [(&str, f64, &str); 17] = [
        ("{{ humanize $value }}", 1500.0, "1.5k"),
        ("{{ $value | humanize }}", 1_234_567.0, "1.235M"),
        ("{{ humanize $value }}", 0.0015, "1.5m"),
        ("{{ humanize $value }}", 0.0, "0"),
        ("{{ humanize $value }}", 999.0, "999"),
        ("{{ humanize1024 $value }}", 2048.0, "2ki"),
        ("{{ humanizePercentage $value }}", 0.1234, "12.34%"),
        ("{{ humanizeDuration $value }}", 90061.0, "1d 1h 1m 1s"),
        ("{{ humanizeDuration $value }}", 0.25, "250ms"),
        ("{{ printf \"%.2f\" $value }}", 1.23456, "1.23"),
        ("{{ printf \"%s=%.1f%%\" $labels.job $value }}", 99.95, "node=100.0%"),
        ("{{ $value | printf \"%.3f\" }}", 0.5, "0.500"),
        ("{{ toUpper $labels.env }}", 1.0, "PROD"),
        ("{{ $labels.job | toUpper | toLower }}", 1.0, "node"),
        ("{{ title \"hello wide world\" }}", 1.0, "Hello Wide World"),
        ("{{ index $labels \"instance\" }}", 1.0, "db-1:9100"),
        ("{{ humanize (printf \"%.0f\" $value) }}", 2500.4, "2.5k"),
    ];
    for (src, v, want) in cases {
        assert_eq!(render(src, v), want, "{src}");
    }
}

#[test]
fn humanize_string_labels_like_prometheus() {
    let l = labels([("bytes", "1048576"), ("bad", "abc")]);
    let t = Template::parse("{{ humanize1024 $labels.bytes }}").unwrap();
    assert_eq!(t.render(&TemplateData::new(&l, 0.0)).unwrap(), "1Mi");
    let t = Template::parse("x {{ humanize $labels.bad }}").unwrap();
    assert_eq!(t.render(&TemplateData::new(&l, 0.0)).unwrap_err().message, "humanize: \"abc\" is not a number");
    assert_eq!(t.expand(&TemplateData::new(&l, 0.0)), "<error expanding template: humanize: \"abc\" is not a number>");
    let t = Template::parse("{{ toUpper $value }}").unwrap();
    assert_eq!(
        t.render(&TemplateData::new(&l, 1.0)).unwrap_err().message,
        "toUpper: wrong type for value; expected string; got float64"
    );
}

#[test]
fn trim_markers() {
    assert_eq!(render("a   {{- $labels.job -}}   b", 1.0), "anodeb");
    assert_eq!(render("a\n  {{- \"x\" }}  b", 1.0), "ax  b");
    assert_eq!(render("{{-3}}", 1.0), "-3");
}

#[test]
fn parse_errors_are_found_at_load_time() {
    let cases = [
        ("{{ $labels.x ", "unclosed action: \"{{\" at offset 0 has no matching \"}}\""),
        ("ok {{ humanise $value }}", "function \"humanise\" not defined (at offset 6)"),
        ("{{ $vlaue }}", "undefined variable \"$vlaue\" at offset 3"),
        ("{{ .Lables.x }}", "can't evaluate field .Lables.x at offset 3"),
        ("{{ humanize }}", "wrong number of args for humanize: want 1 got 0"),
        ("{{ humanize $value $value }}", "wrong number of args for humanize: want 1 got 2"),
        ("{{ $value | humanize $value }}", "wrong number of args for humanize: want 1 got 2"),
        ("{{ printf }}", "wrong number of args for printf: want at least 1 got 0"),
        (
            "{{ if $value }}x{{ end }}",
            "{{if}} at offset 3 is not supported in alert templates (only values, functions and pipelines)",
        ),
        ("{{ }}", "missing value for command at offset 0"),
        ("{{ \"abc }}", "unclosed action: \"{{\" at offset 0 has no matching \"}}\""),
        ("{{ $value $value }}", "can't give argument to non-function at offset 10"),
        ("{{ humanize $value | $value }}", "non executable command in pipeline at offset 21"),
        ("{{ (humanize $value }}", "unclosed left paren at offset 3"),
        ("{{ $labels.a-b }}", "unexpected '-' at offset 12"),
        ("{{ 1.2.3 }}", "bad number syntax \"1.2.3\" at offset 3"),
        ("{{/* open }}", "unclosed comment at offset 0"),
        ("{{ $value.x }}", "$value has no fields (at offset 3)"),
        (
            "{{ printf \"%d\" humanize }}",
            "function \"humanize\" at offset 15 needs parentheses to be used as an argument",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(parse_err(src), want, "{src}");
    }
}

#[test]
fn serde_keeps_the_source() {
    let t = Template::parse("{{ $labels.a }}!").unwrap();
    let j = serde_json::to_string(&t).unwrap();
    assert_eq!(j, "\"{{ $labels.a }}!\"");
    assert_eq!(serde_json::from_str::<Template>(&j).unwrap(), t);
    assert!(serde_json::from_str::<Template>("\"{{ nope }}\"").is_err());
}

#[test]
fn humanize_table() {
    let cases: [(f64, &str); 10] = [
        (1.0, "1"),
        (1000.0, "1k"),
        (1e9, "1G"),
        (-2500.0, "-2.5k"),
        (123.456, "123.5"),
        (0.000_001, "1u"),
        (1e30, "1e+06Y"),
        (f64::INFINITY, "+Inf"),
        (f64::NAN, "NaN"),
        (12345.0, "12.35k"),
    ];
    for (v, want) in cases {
        assert_eq!(humanize(v), want, "{v}");
    }
    assert_eq!(humanize1024(1.0), "1");
    assert_eq!(humanize1024(1536.0), "1.5ki");
    assert_eq!(humanize_duration(0.0), "0s");
    assert_eq!(humanize_duration(59.5), "59.5s");
    assert_eq!(humanize_duration(-3661.0), "-1h 1m 1s");
    assert_eq!(humanize_duration(61.0), "1m 1s");
    assert_eq!(humanize_percentage(0.5), "50%");
}
