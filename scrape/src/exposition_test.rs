use super::*;

fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn s(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
    Sample { name: name.into(), labels: l(labels), value, timestamp_ms: None }
}

fn text(body: &str) -> Exposition {
    parse(body.as_bytes(), Format::Text).unwrap_or_else(|e| panic!("{e}"))
}

fn om(body: &str) -> Exposition {
    parse(body.as_bytes(), Format::OpenMetrics).unwrap_or_else(|e| panic!("{e}"))
}

fn text_err(body: &str) -> String {
    parse(body.as_bytes(), Format::Text).expect_err("should fail").to_string()
}

fn om_err(body: &str) -> String {
    parse(body.as_bytes(), Format::OpenMetrics).expect_err("should fail").to_string()
}

/// Trimmed from a real node_exporter 1.8 /metrics page.
const NODE_EXPORTER: &str = r#"# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.1981e-05
go_gc_duration_seconds{quantile="0.25"} 3.3631e-05
go_gc_duration_seconds{quantile="0.5"} 4.5532e-05
go_gc_duration_seconds{quantile="0.75"} 5.8383e-05
go_gc_duration_seconds{quantile="1"} 0.000217613
go_gc_duration_seconds_sum 0.047219354
go_gc_duration_seconds_count 812
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 8
# HELP go_info Information about the Go environment.
# TYPE go_info gauge
go_info{version="go1.22.5"} 1
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1.22453763e+06
node_cpu_seconds_total{cpu="0",mode="iowait"} 1056.36
node_cpu_seconds_total{cpu="0",mode="system"} 9723.47
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/nvme0n1p2",fstype="ext4",mountpoint="/"} 4.1253216256e+10
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 3.3427456e+09
# HELP node_network_receive_bytes_total Network device statistic receive_bytes.
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="eth0"} 8.675309e+09
node_network_receive_bytes_total{device="lo"} 4.2e+07
# HELP node_scrape_collector_success node_exporter: Whether a collector succeeded.
# TYPE node_scrape_collector_success gauge
node_scrape_collector_success{collector="cpu"} 1
node_scrape_collector_success{collector="zfs"} 0
# HELP node_textfile_scrape_error 1 if there was an error opening or reading a file, 0 otherwise
# TYPE node_textfile_scrape_error gauge
node_textfile_scrape_error 0
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.72034556189e+09
# HELP promhttp_metric_handler_requests_total Total number of scrapes by HTTP status code.
# TYPE promhttp_metric_handler_requests_total counter
promhttp_metric_handler_requests_total{code="200"} 8109
promhttp_metric_handler_requests_total{code="500"} 0
"#;

#[test]
fn node_exporter_page() {
    let e = text(NODE_EXPORTER);
    assert_eq!(e.samples.len(), 22);
    assert_eq!(
        e.samples[0],
        s("go_gc_duration_seconds", &[("quantile", "0.0")], 2.1981e-05),
        "normalized as Prometheus 3 does"
    );
    assert_eq!(e.samples[6], s("go_gc_duration_seconds_count", &[], 812.0));
    assert_eq!(
        e.samples[12],
        s(
            "node_filesystem_avail_bytes",
            &[("device", "/dev/nvme0n1p2"), ("fstype", "ext4"), ("mountpoint", "/")],
            4.1253216256e10
        )
    );
    assert_eq!(e.samples.last(), Some(&s("promhttp_metric_handler_requests_total", &[("code", "500")], 0.0)));
    assert_eq!(e.family("go_gc_duration_seconds_sum"), Some(("go_gc_duration_seconds", MetricType::Summary)));
    assert_eq!(e.family("go_gc_duration_seconds"), Some(("go_gc_duration_seconds", MetricType::Summary)));
    assert_eq!(e.family("node_cpu_seconds_total"), Some(("node_cpu_seconds_total", MetricType::Counter)));
    assert_eq!(e.family("go_goroutines"), Some(("go_goroutines", MetricType::Gauge)));
    assert_eq!(e.family("go_goroutines_sum"), None, "a gauge has no _sum");
    assert_eq!(e.family("nothing"), None);
}

#[test]
fn histogram_and_summary_families() {
    let e = text(
        "# TYPE http_request_duration_seconds histogram\n\
         http_request_duration_seconds_bucket{le=\"0.05\"} 24054\n\
         http_request_duration_seconds_bucket{le=\"0.1\"} 33444\n\
         http_request_duration_seconds_bucket{le=\"+Inf\"} 144320\n\
         http_request_duration_seconds_sum 53423\n\
         http_request_duration_seconds_count 144320\n\
         # TYPE rpc_duration_seconds summary\n\
         rpc_duration_seconds{quantile=\"0.01\"} 3102\n\
         rpc_duration_seconds{quantile=\"0.99\"} NaN\n\
         rpc_duration_seconds_sum 1.7560473e+07\n\
         rpc_duration_seconds_count 2693\n",
    );
    assert_eq!(e.samples.len(), 9);
    assert_eq!(e.samples[2], s("http_request_duration_seconds_bucket", &[("le", "+Inf")], 144320.0));
    assert!(e.samples[6].value.is_nan());
    for name in ["http_request_duration_seconds_bucket", "http_request_duration_seconds_sum"] {
        assert_eq!(e.family(name), Some(("http_request_duration_seconds", MetricType::Histogram)));
    }
    assert_eq!(e.family("rpc_duration_seconds_count"), Some(("rpc_duration_seconds", MetricType::Summary)));
    assert_eq!(e.family("rpc_duration_seconds_bucket"), None, "a summary has no buckets");
}

#[test]
fn text_format_values_timestamps_and_whitespace() {
    let e = text(
        "\n  \t\n# a comment\n#no space is a comment too\n# HELP\n\
         a 1\n\
         b{} -Inf\n\
         c{x=\"1\"}+Inf 1395066363000\n\
         \td { y = \"2\" , z=\"3\",}   1e3   \t 17 \n\
         e{x=\"1\" y=\"2\"} .5\n\
         f 0\n\
         g{empty=\"\",k=\"v\"} 2",
    );
    let got: Vec<(&str, f64, Option<i64>)> =
        e.samples.iter().map(|s| (s.name.as_str(), s.value, s.timestamp_ms)).collect();
    assert_eq!(
        got,
        vec![
            ("a", 1.0, None),
            ("b", f64::NEG_INFINITY, None),
            ("c", f64::INFINITY, Some(1_395_066_363_000)),
            ("d", 1000.0, Some(17)),
            ("e", 0.5, None),
            ("f", 0.0, None),
            ("g", 2.0, None),
        ]
    );
    assert_eq!(e.samples[3].labels, l(&[("y", "2"), ("z", "3")]));
    assert_eq!(e.samples[4].labels, l(&[("x", "1"), ("y", "2")]), "the comma between labels is optional");
    assert_eq!(e.samples[6].labels, l(&[("k", "v")]), "empty label values are dropped");
}

#[test]
fn labels_are_sorted_and_unescaped() {
    let e = text(concat!(
        r#"msg{z="a\\b",a="say \"hi\"",m="two\nlines",t="tab\tstays",u="ünïcödé"} 1"#,
        "\n",
        "# HELP x help with \\\\ and \\n escapes\n",
    ));
    assert_eq!(
        e.samples[0].labels,
        l(&[("a", "say \"hi\""), ("m", "two\nlines"), ("t", "tab\\tstays"), ("u", "ünïcödé"), ("z", "a\\b")])
    );
}

#[test]
fn bucket_and_quantile_bounds_are_normalized_like_prometheus_3() {
    let e = text(
        "# TYPE h histogram\n\
         h_bucket{le=\"0.005\"} 1\n\
         h_bucket{le=\"1\"} 2\n\
         h_bucket{le=\"10\"} 2\n\
         h_bucket{le=\"1000000\"} 3\n\
         h_bucket{le=\"0.00001\"} 3\n\
         h_bucket{le=\"+Inf\"} 3\n\
         h_bucket{le=\"bogus\"} 3\n\
         # TYPE s summary\n\
         s{quantile=\"0\"} 1\n\
         s{quantile=\"0.99\",le=\"5\"} 1\n\
         # TYPE g gauge\n\
         g{le=\"5\",quantile=\"1\"} 1\n",
    );
    let got: Vec<String> = e.samples.iter().map(|s| crate::labels::display(&s.labels)).collect();
    assert_eq!(
        got,
        vec![
            r#"{le="0.005"}"#,
            r#"{le="1.0"}"#,
            r#"{le="10.0"}"#,
            r#"{le="1e+06"}"#,
            r#"{le="1e-05"}"#,
            r#"{le="+Inf"}"#,
            r#"{le="bogus"}"#,
            r#"{quantile="0.0"}"#,
            r#"{le="5", quantile="0.99"}"#,
            r#"{le="5", quantile="1"}"#,
        ]
    );
    let o = om("# TYPE h histogram\nh_bucket{le=\"2.5\"} 1\nh_bucket{le=\"100\"} 1\n# EOF\n");
    assert_eq!(o.samples[1].labels, l(&[("le", "100.0")]));
}

#[test]
fn go_float_formatting() {
    let cases = [
        (1.0, "1.0"),
        (0.0, "0.0"),
        (-1.0, "-1.0"),
        (0.5, "0.5"),
        (0.0001, "0.0001"),
        (0.00012, "0.00012"),
        (0.00001, "1e-05"),
        (999999.0, "999999.0"),
        (999999.5, "999999.5"),
        (1234567.0, "1.234567e+06"),
        (1e21, "1e+21"),
        (1.5e-300, "1.5e-300"),
        (-2.5e10, "-2.5e+10"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
    ];
    for (f, want) in cases {
        assert_eq!(format_openmetrics_float(f), want, "{f}");
    }
}

#[test]
fn types_apply_to_families() {
    let e = text("# TYPE a counter\n# TYPE b untyped\n# HELP c whatever\na 1\nb 2\nc 3\n");
    assert_eq!(e.types.get("a"), Some(&MetricType::Counter));
    assert_eq!(e.types.get("b"), Some(&MetricType::Unknown));
    assert_eq!(e.types.get("c"), None);
}

#[test]
fn text_format_errors_name_the_line() {
    let cases: &[(&str, &str)] = &[
        ("a 1\n-b 2\n", r#"line 2: expected a metric name, HELP, TYPE or comment, got "-b 2""#),
        ("a\n", r#"line 1: expected value after metric "a", got end of line"#),
        ("a{} \n", r#"line 1: expected value after metric "a", got end of line"#),
        ("\n\na{b=\"1\"} x\n", r#"line 3: invalid value "x" for metric "a""#),
        ("a 0x10\n", r#"line 1: invalid value "0x10" for metric "a""#),
        ("a 1_000\n", r#"line 1: invalid value "1_000" for metric "a""#),
        ("a -NaN\n", r#"line 1: invalid value "-NaN" for metric "a""#),
        ("a 1 -5\n", r#"line 1: expected timestamp or end of line after value, got "-5""#),
        ("a 1 1.5\n", r#"line 1: expected end of line after timestamp, got ".5""#),
        ("a 1 2 3\n", r#"line 1: expected end of line after timestamp, got "3""#),
        ("a 1 99999999999999999999\n", r#"line 1: timestamp "99999999999999999999" out of range"#),
        ("a{b=\"1\"\n", r#"line 1: unexpected end of line inside braces (missing '}')"#),
        ("a{1=\"1\"} 1\n", r#"line 1: expected label name or '}', got "1=\"1\"} 1""#),
        ("a{b:c=\"1\"} 1\n", r#"line 1: expected '=' after label name "b", got ":c=\"1\"} 1""#),
        ("a{b=1} 1\n", r#"line 1: expected quoted label value for "b", got "1} 1""#),
        ("a{b=\"1} 1\n", r#"line 1: unterminated label value for "b" (missing closing '"')"#),
        ("a{b=\"1\",b=\"2\"} 1\n", r#"line 1: label name "b" is not unique"#),
        (
            "# TYPE a gauges\n",
            r#"line 1: invalid metric type "gauges" for "a" (expected counter, gauge, histogram, summary or untyped)"#,
        ),
        (
            "# TYPE a  gauge\n",
            r#"line 1: invalid metric type " gauge" for "a" (expected counter, gauge, histogram, summary or untyped)"#,
        ),
        (
            "# TYPE a\n",
            r#"line 1: invalid metric type "" for "a" (expected counter, gauge, histogram, summary or untyped)"#,
        ),
        ("a 1\n# TYPE 9a gauge\n", r#"line 2: expected metric name after # TYPE, got "9a gauge""#),
        ("# HELP \n", "line 1: expected metric name after # HELP, got end of line"),
        ("{__name__=\"a\"} 1\n", r#"line 1: expected a metric name, HELP, TYPE or comment, got "{__name__=\"a\"} 1""#),
        ("a{__name__=\"b\"} 1\n", r#"line 1: label name "__name__" is not unique"#),
    ];
    for (body, want) in cases {
        assert_eq!(&text_err(body), want, "{body:?}");
    }
    assert_eq!(
        parse(b"a 1\n# HELP a caf\xe9\n", Format::Text).unwrap_err().to_string(),
        "line 2: # HELP text for \"a\" is not valid UTF-8"
    );
    assert_eq!(
        parse(b"# HELP a caf\xe9\n# EOF\n", Format::OpenMetrics).unwrap_err().to_string(),
        "line 1: # HELP text for \"a\" is not valid UTF-8"
    );
    let bad_utf8 = b"a{b=\"\xff\"} 1\n";
    assert_eq!(
        parse(bad_utf8, Format::Text).unwrap_err().to_string(),
        "line 1: label value \"\u{fffd}\" is not valid UTF-8"
    );
}

const OPENMETRICS: &str = "# TYPE acme_http_router_request_seconds summary\n\
# UNIT acme_http_router_request_seconds seconds\n\
# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.\n\
acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0\n\
acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n\
# TYPE go_goroutines gauge\n\
# HELP go_goroutines Number of goroutines.\n\
go_goroutines 69 1520879607.789\n\
# TYPE foo counter\n\
foo_total 17.0 1520879607.789 # {id=\"counter-test\"} 5\n\
foo_created 1520872607.123\n\
# TYPE bar histogram\n\
bar_bucket{le=\"0.1\"} 8 # {trace_id=\"KOO5S4vxi0o\"} 0.067 1601919900.5\n\
bar_bucket{le=\"+Inf\"} 17 # {trace_id=\"oHg5SJYRHA0\"} 9.8 1520879607.789\n\
bar_sum 324789.3\n\
bar_count 17\n\
bar_created 1520430000.123\n\
# TYPE state stateset\n\
state{state=\"a\"} 1\n\
state{state=\"b\"} 0\n\
# TYPE build info\n\
build_info{version=\"1.2\",} 1\n\
# TYPE escapes_created gauge\n\
escapes_created{a=\"x\\\\y\\\"z\\nw\"} NaN\n\
# EOF\n";

#[test]
fn openmetrics_document() {
    let e = om(OPENMETRICS);
    let names: Vec<&str> = e.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "acme_http_router_request_seconds_sum",
            "acme_http_router_request_seconds_count",
            "go_goroutines",
            "foo_total",
            "bar_bucket",
            "bar_bucket",
            "bar_sum",
            "bar_count",
            "state",
            "state",
            "build_info",
            "escapes_created",
        ],
        "_created of the summary, counter and histogram are dropped, a gauge named *_created is kept"
    );
    assert_eq!(e.samples[0].labels, l(&[("method", "GET"), ("path", "/api/v1")]));
    assert_eq!(e.samples[2].timestamp_ms, Some(1_520_879_607_789));
    assert_eq!(e.samples[3].value, 17.0);
    assert_eq!(e.samples[3].timestamp_ms, Some(1_520_879_607_789));
    assert_eq!(e.samples[4], s("bar_bucket", &[("le", "0.1")], 8.0));
    assert_eq!(e.samples[10].labels, l(&[("version", "1.2")]));
    assert_eq!(e.samples[11].labels, l(&[("a", "x\\y\"z\nw")]));
    assert!(e.samples[11].value.is_nan());
    assert_eq!(e.family("bar_bucket"), Some(("bar", MetricType::Histogram)));
    assert_eq!(e.family("foo_total"), Some(("foo", MetricType::Counter)));
    assert_eq!(e.family("build_info"), Some(("build", MetricType::Info)));
    assert_eq!(e.family("state"), Some(("state", MetricType::StateSet)));
}

#[test]
fn openmetrics_eof_without_newline_and_negative_timestamps() {
    let e = om("a 1 -1.5\n# EOF");
    assert_eq!(e.samples[0].timestamp_ms, Some(-1500));
    assert!(om("# EOF\n").samples.is_empty());
}

#[test]
fn openmetrics_errors_name_the_line() {
    let cases: &[(&str, &str)] = &[
        ("a 1\n", "line 2: data does not end with # EOF"),
        ("", "line 1: data does not end with # EOF"),
        ("a 1", "line 1: data does not end with # EOF (last line has no newline)"),
        ("a 1\n# EOF\n\n", "line 3: unexpected data after # EOF"),
        ("# EOF\na 1\n", "line 2: unexpected data after # EOF"),
        ("# EOF \n", "line 1: unexpected data after # EOF"),
        ("a 1\n\nb 2\n# EOF\n", "line 2: unexpected blank line (OpenMetrics allows none)"),
        (
            "# a comment\n# EOF\n",
            r##"line 1: invalid comment "# a comment": OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF"##,
        ),
        (
            "#TYPE a gauge\n# EOF\n",
            r##"line 1: invalid comment "#TYPE a gauge": OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF"##,
        ),
        ("# TYPE a\n# EOF\n", r#"line 1: expected a space and text after # TYPE a, got end of line"#),
        (
            "# TYPE a untyped\n# EOF\n",
            r#"line 1: invalid metric type "untyped" for "a" (expected counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown)"#,
        ),
        ("# UNIT a_bytes seconds\n# EOF\n", r#"line 1: unit "seconds" is not a suffix of metric "a_bytes""#),
        ("# HELP 1a x\n# EOF\n", r#"line 1: expected metric name after # HELP, got "1a x""#),
        ("a  1\n# EOF\n", r#"line 1: expected value after "a", got " 1""#),
        ("a\t1\n# EOF\n", r#"line 1: expected a space and value after "a", got "\t1""#),
        ("a{b=\"1\", c=\"2\"} 1\n# EOF\n", r#"line 1: expected label name or '}', got " c=\"2\"} 1""#),
        ("a{b = \"1\"} 1\n# EOF\n", r#"line 1: expected '=' after label name "b", got " = \"1\"} 1""#),
        ("a{b=\"1\"c=\"2\"} 1\n# EOF\n", r#"line 1: expected ',' or '}' after label value, got "c=\"2\"} 1""#),
        ("a{b=\"1} 1\n# EOF\n", r#"line 1: unterminated value for label "b" (missing closing '"')"#),
        ("a{b=\"1\",b=\"1\"} 1\n# EOF\n", r#"line 1: label name "b" is not unique"#),
        ("a one\n# EOF\n", r#"line 1: invalid value "one" for "a""#),
        ("a 1 2  \n# EOF\n", r#"line 1: expected exemplar or end of line after timestamp, got "  ""#),
        ("a 1 NaN\n# EOF\n", "line 1: invalid timestamp NaN"),
        ("a 1 x\n# EOF\n", r#"line 1: invalid timestamp "x""#),
        ("a 1 # {id=\"x\"}\n# EOF\n", r#"line 1: expected a space and value after "exemplar labels", got end of line"#),
        ("a 1 # {id=1} 2\n# EOF\n", r#"line 1: expected quoted value for exemplar label "id", got "1} 2""#),
        ("a 1 # {id=\"x\"} 2 Inf\n# EOF\n", r#"line 1: invalid exemplar timestamp "Inf""#),
        ("a 1 # {id=\"x\"} 2 3 4\n# EOF\n", r#"line 1: expected end of line after exemplar timestamp, got " 4""#),
        ("b 1\n{a=\"b\"} 1\n# EOF\n", r#"line 2: expected a metric name or # HELP/TYPE/UNIT/EOF, got "{a=\"b\"} 1""#),
    ];
    for (body, want) in cases {
        assert_eq!(&om_err(body), want, "{body:?}");
    }
}

#[test]
fn content_type_picks_the_parser() {
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Format::OpenMetrics
    );
    assert_eq!(Format::from_content_type("Application/OpenMetrics-Text"), Format::OpenMetrics);
    assert_eq!(Format::from_content_type("text/plain; version=0.0.4; charset=utf-8"), Format::Text);
    assert_eq!(Format::from_content_type(""), Format::Text);
    assert_eq!(Format::from_content_type("application/json"), Format::Text);
}

#[test]
fn a_large_page_parses_quickly() {
    let mut body = String::new();
    for f in 0..50 {
        body.push_str(&format!("# HELP metric_{f} Some help.\n# TYPE metric_{f} counter\n"));
        for i in 0..200 {
            body.push_str(&format!(
                "metric_{f}{{instance=\"host-{i}:9100\",mode=\"m{}\",cpu=\"{i}\"}} {}.5\n",
                i % 7,
                i * 31
            ));
        }
    }
    let start = std::time::Instant::now();
    let e = text(&body);
    assert_eq!(e.samples.len(), 10_000);
    // Generous: debug builds of this crate parse ~10k samples in a few ms; this catches accidental quadratic work.
    assert!(start.elapsed() < std::time::Duration::from_secs(2), "{:?}", start.elapsed());
}
