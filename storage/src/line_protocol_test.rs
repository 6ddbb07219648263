//! Tests of the line-protocol parser and writer. Each table case is named for the mistake it would catch.

use proptest::prelude::*;

use super::*;

const NOW_NS: i64 = 1_700_000_000_123_456_789;
const NOW_MS: i64 = 1_700_000_000_123;

/// The default limits without the future bound (most cases here write times far from their `now`); the
/// bound has its own tests.
fn lim() -> Limits {
    Limits { max_future_ms: i64::MAX, ..Limits::default() }
}

fn parse_ns(body: &[u8]) -> Result<Vec<Point>, ParseError> {
    parse(body, Precision::Nanoseconds, NOW_NS, &lim())
}

/// The single point of a one-line body.
fn one(line: &str) -> Point {
    let mut v = parse_ns(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    assert_eq!(v.len(), 1, "{line:?}");
    v.remove(0)
}

/// The error of a one-line body (which must be on line 1).
fn err(line: &[u8]) -> ErrorKind {
    let e = parse_ns(line).expect_err(&String::from_utf8_lossy(line));
    assert_eq!(e.line, 1);
    e.kind
}

fn tags(p: &Point) -> Vec<(&str, &str)> {
    p.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn field_keys(p: &Point) -> Vec<&str> {
    p.fields.iter().map(|(k, _)| k.as_str()).collect()
}

/// A `String` for error texts or a `SmolStr` for point names, as the context needs.
fn s<T: for<'a> From<&'a str>>(x: &str) -> T {
    T::from(x)
}

// ---------------------------------------------------------------------------------------------------------
// Field values.

#[test]
fn every_field_type_converts_exactly() {
    // (value text, expected value); compared bit for bit, so -0.0 and rounding mistakes show.
    let cases: &[(&str, f64)] = &[
        ("1", 1.0),
        ("1.5", 1.5),
        ("-1.5e-3", -1.5e-3),
        ("1e10", 1e10),
        ("1E+2", 100.0),
        ("2.5e+0", 2.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("-.25", -0.25),
        ("007", 7.0),
        ("0.001", 0.001),
        ("-0", -0.0),
        ("0e999999", 0.0),
        ("0.1", 0.1),
        ("0.30000000000000004", 0.30000000000000004),
        ("58.13", 58.13),
        ("9007199254740993", 9007199254740992.0), // 2^53 + 1: above the fast path, rounds to even
        ("123456789012345678901234567890", 1.2345678901234568e29), // more digits than a u64 holds
        ("1.7976931348623157e308", f64::MAX),
        ("2.2250738585072014e-308", f64::MIN_POSITIVE),
        ("5e-324", 5e-324), // smallest subnormal
        ("1e-400", 0.0),    // underflow is zero, not an error
        ("12i", 12.0),
        ("-12i", -12.0),
        ("-0i", 0.0),
        ("9223372036854775807i", 9223372036854775807i64 as f64),
        ("-9223372036854775808i", -9223372036854775808.0),
        ("0u", 0.0),
        ("12u", 12.0),
        ("18446744073709551615u", 18446744073709551615u64 as f64),
        ("t", 1.0),
        ("T", 1.0),
        ("true", 1.0),
        ("True", 1.0),
        ("TRUE", 1.0),
        ("f", 0.0),
        ("F", 0.0),
        ("false", 0.0),
        ("False", 0.0),
        ("FALSE", 0.0),
    ];
    for &(text, want) in cases {
        let p = one(&format!("m v={text} 1"));
        assert_eq!(p.fields.len(), 1);
        assert_eq!(p.fields[0].1.to_bits(), want.to_bits(), "{text}: got {}, want {want}", p.fields[0].1);
    }
}

#[test]
fn bad_field_values_are_refused_with_the_reason() {
    let invalid = |v: &str| ErrorKind::InvalidFieldValue { field: s("v"), value: s(v) };
    let non_finite = |v: &str| ErrorKind::NonFiniteField { field: s("v"), value: s(v) };
    let range = |v: &str, kind| ErrorKind::FieldOutOfRange { field: s("v"), value: s(v), kind };
    let cases: Vec<(&str, ErrorKind)> = vec![
        ("inf", non_finite("inf")),
        ("+inf", non_finite("+inf")),
        ("-Infinity", non_finite("-Infinity")),
        ("NaN", non_finite("NaN")),
        ("-nan", non_finite("-nan")),
        ("+1.5", invalid("+1.5")), // leading '+' is not line protocol
        ("1.5.5", invalid("1.5.5")),
        ("1e", invalid("1e")),
        ("1e+", invalid("1e+")),
        ("e5", invalid("e5")),
        (".", invalid(".")),
        ("-", invalid("-")),
        ("--1", invalid("--1")),
        ("0x10", invalid("0x10")),
        ("1_000", invalid("1_000")),
        ("1.5i", invalid("1.5i")), // integers have no fraction
        ("1e3i", invalid("1e3i")),
        ("+1i", invalid("+1i")),
        ("i", invalid("i")),
        ("-i", invalid("-i")),
        ("-1u", invalid("-1u")), // unsigned has no sign
        ("1i2", invalid("1i2")),
        ("12I", invalid("12I")),
        ("tru", invalid("tru")),
        ("yes", invalid("yes")),
        ("tRUE", invalid("tRUE")),
        ("99999999999999999999x9i", invalid("99999999999999999999x9i")), // syntax beats overflow
        ("9223372036854775808i", range("9223372036854775808i", NumberKind::Integer)),
        ("-9223372036854775809i", range("-9223372036854775809i", NumberKind::Integer)),
        ("18446744073709551616u", range("18446744073709551616u", NumberKind::Unsigned)),
        ("1e309", range("1e309", NumberKind::Float)),
        ("-1e309", range("-1e309", NumberKind::Float)),
    ];
    for (text, want) in cases {
        assert_eq!(err(format!("m v={text} 1").as_bytes()), want, "{text}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Escapes and names.

#[test]
fn escapes_in_every_position() {
    // (line, measurement, tags, field keys)
    type Case = (&'static str, &'static str, Vec<(&'static str, &'static str)>, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        (r"cpu\ load v=1", "cpu load", vec![], vec!["v"]), // measurement: escaped space
        (r"cpu\,x,a=b v=1", "cpu,x", vec![("a", "b")], vec!["v"]), // measurement: escaped comma
        (r"cpu=x v=1", "cpu=x", vec![], vec!["v"]),        // '=' is plain in a measurement
        (r"cpu\=x v=1", r"cpu\=x", vec![], vec!["v"]),     // ... so '\=' is kept there
        (r"m,k=a\=b v=1", "m", vec![("k", "a=b")], vec!["v"]), // tag value: escaped '='
        (r"m,k\ 1=a\ b\,c v=1", "m", vec![("k 1", "a b,c")], vec!["v"]), // tag key and value: space, comma
        (r"m,k\=1=x v=1", "m", vec![("k=1", "x")], vec!["v"]), // tag key: escaped '='
        (r"m,path=C:\dir v=1", "m", vec![("path", r"C:\dir")], vec!["v"]), // lone backslash is literal
        (r"m,k=a\\,b v=1", "m", vec![("k", r"a\,b")], vec!["v"]), // the last backslash escapes
        (r"m,k=a\\b v=1", "m", vec![("k", r"a\\b")], vec!["v"]), // '\\' is not an escape in names
        (r"m fi\ eld=1", "m", vec![], vec!["fi eld"]),     // field key: escaped space
        (r"m f\,x\=y=1", "m", vec![], vec!["f,x=y"]),      // field key: comma and '='
        (r#"m,q="x" "v"=1"#, "m", vec![("q", "\"x\"")], vec!["\"v\""]), // quotes are plain in names
        ("m,🍭=é v=1", "m", vec![("🍭", "é")], vec!["v"]), // UTF-8
    ];
    for (line, m, t, f) in cases {
        let p = one(line);
        assert_eq!(p.measurement, m, "{line}");
        assert_eq!(tags(&p), t, "{line}");
        assert_eq!(field_keys(&p), f, "{line}");
    }
}

#[test]
fn tags_are_sorted_by_key() {
    assert_eq!(tags(&one("m,z=1,a=2,m=3 v=1")), vec![("a", "2"), ("m", "3"), ("z", "1")]);
    assert_eq!(tags(&one("m,B=1,a=2 v=1")), vec![("B", "1"), ("a", "2")], "byte order");
}

#[test]
fn duplicate_tags_are_refused_sorted_or_not() {
    assert_eq!(err(b"m,a=1,a=2 v=1"), ErrorKind::DuplicateTag(s("a")));
    assert_eq!(err(b"m,b=1,a=1,b=2 v=1"), ErrorKind::DuplicateTag(s("b")));
}

#[test]
fn duplicate_fields_last_value_wins_at_first_position() {
    let f = |p: Point| p.fields;
    assert_eq!(f(one("m a=1,b=2,a=3")), vec![(s("a"), 3.0), (s("b"), 2.0)]);
    assert_eq!(f(one("m a=1,a=2i,a=t")), vec![(s("a"), 1.0)]);
    // Past the small-line path (more than 16 fields).
    let line = format!("m {},k0=100,k19=119", (0..20).map(|i| format!("k{i}={i}")).collect::<Vec<_>>().join(","));
    let got = f(one(&line));
    assert_eq!(got.len(), 20);
    assert_eq!(got[0], (s("k0"), 100.0));
    assert_eq!(got[19], (s("k19"), 119.0));
    assert_eq!(got[5], (s("k5"), 5.0));
    // A string duplicate still refuses the line.
    assert_eq!(err(br#"m a=1,a="x""#), ErrorKind::StringField { field: s("a") });
}

// ---------------------------------------------------------------------------------------------------------
// String fields: skipped exactly, then refused. The cases put a syntax error after the string (which wins
// over the string refusal), so a skip that stopped early or late would report something else.

#[test]
fn strings_are_skipped_exactly_then_refused() {
    let string = |f: &str| ErrorKind::StringField { field: s(f) };
    let cases: Vec<(&str, ErrorKind)> = vec![
        (r#"m a=1,msg="hello, world = x y",b=2 5"#, string("msg")),
        (r#"m msg="say \"hi\", ok",b=2 5"#, string("msg")),
        (r#"m msg="ends in backslash \\",b=2 5"#, string("msg")),
        (r#"m msg="" 5"#, string("msg")),
        (r#"m a="x",b="y""#, string("a")), // the first one is named
        (r#"m msg="a, b=c d",v=oops 5"#, ErrorKind::InvalidFieldValue { field: s("v"), value: s("oops") }),
        (r#"m msg="x y\" z" 12x"#, ErrorKind::InvalidTimestamp(s("12x"))),
        (r#"m msg="x y" 1 2"#, ErrorKind::TrailingGarbage(s("2"))),
        (r#"m msg="x"y=1"#, ErrorKind::InvalidFieldValue { field: s("msg"), value: s(r#""x"y=1"#) }),
        (r#"m msg="never closed"#, ErrorKind::UnterminatedString { field: s("msg") }),
        (r#"m msg="ends escaped\""#, ErrorKind::UnterminatedString { field: s("msg") }),
        (r#"m msg="ends in a lone backslash\"#, ErrorKind::UnterminatedString { field: s("msg") }),
    ];
    for (line, want) in cases {
        assert_eq!(err(line.as_bytes()), want, "{line}");
    }
    // A newline ends the line even inside quotes: line protocol has no multi-line strings.
    let e = parse_ns(b"m v=1 1\nm msg=\"a\nb\" 2\n").unwrap_err();
    assert_eq!((e.line, e.kind), (2, ErrorKind::UnterminatedString { field: s("msg") }));
}

#[test]
fn string_field_message_says_what_to_do() {
    let e = parse_ns(br#"m x="text""#).unwrap_err();
    assert_eq!(e.to_string(), r#"line 1: field "x" is a string; Pharos stores numbers only (use a tag for text)"#);
}

// ---------------------------------------------------------------------------------------------------------
// Timestamps.

#[test]
fn timestamps_in_each_precision() {
    use Precision::*;
    let cases: &[(Precision, &str, i64)] = &[
        (Seconds, "1700000000", 1_700_000_000_000),
        (Milliseconds, "1700000000001", 1_700_000_000_001),
        (Microseconds, "1700000000001999", 1_700_000_000_001),
        (Nanoseconds, "1700000000001999999", 1_700_000_000_001),
        (Nanoseconds, "9223372036854775807", 9_223_372_036_854),
        // Negative times floor, so they stay ordered.
        (Seconds, "-5", -5_000),
        (Milliseconds, "-5", -5),
        (Microseconds, "-1500", -2),
        (Nanoseconds, "-1", -1),
        (Milliseconds, "-9223372036854775808", i64::MIN),
        (Seconds, "0", 0),
    ];
    for &(precision, text, want) in cases {
        let got = parse(format!("m v=1 {text}").as_bytes(), precision, NOW_NS, &lim()).unwrap();
        assert_eq!(got[0].timestamp, want, "{precision:?} {text}");
    }
}

#[test]
fn missing_timestamp_is_now_in_every_precision() {
    for precision in [Precision::Seconds, Precision::Milliseconds, Precision::Microseconds, Precision::Nanoseconds] {
        for line in ["m v=1", "m v=1   ", "m,a=b v=1,w=2\r"] {
            let got = parse(line.as_bytes(), precision, NOW_NS, &lim()).unwrap();
            assert_eq!(got[0].timestamp, NOW_MS, "{precision:?} {line:?}");
        }
    }
    // `now` before 1970 floors too.
    assert_eq!(parse(b"m v=1", Precision::Seconds, -1, &lim()).unwrap()[0].timestamp, -1);
}

#[test]
fn bad_timestamps_are_refused() {
    let cases: Vec<(&str, Precision, ErrorKind)> = vec![
        ("m v=1 12x", Precision::Nanoseconds, ErrorKind::InvalidTimestamp(s("12x"))),
        ("m v=1 1.5", Precision::Nanoseconds, ErrorKind::InvalidTimestamp(s("1.5"))),
        ("m v=1 +5", Precision::Nanoseconds, ErrorKind::InvalidTimestamp(s("+5"))),
        ("m v=1 -", Precision::Nanoseconds, ErrorKind::InvalidTimestamp(s("-"))),
        ("m v=1 1,2", Precision::Nanoseconds, ErrorKind::InvalidTimestamp(s("1,2"))),
        ("m v=1 1\t2", Precision::Nanoseconds, ErrorKind::InvalidTimestamp(s("1\t2"))),
        ("m v=1 1 2", Precision::Nanoseconds, ErrorKind::TrailingGarbage(s("2"))),
        ("m v=1 1   junk here", Precision::Nanoseconds, ErrorKind::TrailingGarbage(s("junk here"))),
        ("m v=1 9223372036854775808", Precision::Nanoseconds, ErrorKind::TimestampOutOfRange(s("9223372036854775808"))),
        (
            "m v=1 -9223372036854775809",
            Precision::Milliseconds,
            ErrorKind::TimestampOutOfRange(s("-9223372036854775809")),
        ),
        (
            "m v=1 99999999999999999999999",
            Precision::Nanoseconds,
            ErrorKind::TimestampOutOfRange(s("99999999999999999999999")),
        ),
        // Valid in seconds, but its milliseconds do not fit an i64.
        ("m v=1 9223372036854776", Precision::Seconds, ErrorKind::TimestampOutOfRange(s("9223372036854776"))),
    ];
    for (line, precision, want) in cases {
        let e = parse(line.as_bytes(), precision, NOW_NS, &lim()).unwrap_err();
        assert_eq!(e.kind, want, "{line:?}");
    }
    // The largest seconds value that does fit.
    let ok = parse(b"m v=1 9223372036854775", Precision::Seconds, 0, &lim()).unwrap();
    assert_eq!(ok[0].timestamp, 9_223_372_036_854_775_000);
}

#[test]
fn timestamps_past_the_future_bound_are_refused_naming_the_precision_they_fit() {
    let limits = Limits::default();
    let now_s = NOW_MS / 1000;
    let day_s = 86_400;
    let parse_at = |line: String, p: Precision| parse(line.as_bytes(), p, NOW_NS, &limits);
    // Up to the bound is fine; a second past it is not, and no other precision makes it current.
    assert!(parse_at(format!("m v=1 {}", now_s + day_s), Precision::Seconds).is_ok());
    let e = parse_at(format!("m v=1 {}", now_s + day_s + 1), Precision::Seconds).unwrap_err();
    match &e.kind {
        ErrorKind::TimestampInFuture { ahead_ms, max_ms, fits, .. } => {
            assert_eq!((*ahead_ms, *max_ms, *fits), ((day_s + 1) * 1000 - NOW_MS % 1000, 86_400_000, None));
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.to_string().contains("reads as"), "{e}");
    // Each finer unit sent as a coarser one: the message names the one that fits.
    let cases = [
        (Precision::Seconds, NOW_MS, Precision::Milliseconds),
        (Precision::Seconds, NOW_MS * 1000, Precision::Microseconds),
        (Precision::Milliseconds, NOW_MS * 1000, Precision::Microseconds),
        (Precision::Microseconds, NOW_NS, Precision::Nanoseconds),
    ];
    for (sent_as, raw, fits) in cases {
        let e = parse_at(format!("m v=1 1\nm v=2 {raw}"), sent_as).unwrap_err();
        assert_eq!(e.line, 2);
        let ErrorKind::TimestampInFuture { fits: got, .. } = e.kind.clone() else { panic!("{e}") };
        assert_eq!(got, Some(fits), "{raw} sent as {sent_as:?}");
        let text = e.to_string();
        assert!(text.contains(&format!("precision={}", fits.name())), "{text}");
        assert!(text.contains("years in the future"), "{text}");
    }
    // A configurable bound: zero refuses anything after now.
    let strict = Limits { max_future_ms: 0, ..Limits::default() };
    assert!(parse(format!("m v=1 {NOW_MS}").as_bytes(), Precision::Milliseconds, NOW_NS, &strict).is_ok());
    assert!(parse(format!("m v=1 {}", NOW_MS + 1).as_bytes(), Precision::Milliseconds, NOW_NS, &strict).is_err());
    // A point without a timestamp is `now`, never refused.
    assert!(parse(b"m v=1", Precision::Seconds, NOW_NS, &strict).is_ok());
}

#[test]
fn the_precision_a_timestamp_fits() {
    use Precision::*;
    // Seconds sent without a precision (ns): 1970 as written, current as seconds.
    assert_eq!(Precision::fitting(NOW_MS / 1000, Nanoseconds, NOW_MS, 86_400_000), Some(Seconds));
    assert_eq!(Precision::fitting(NOW_MS, Nanoseconds, NOW_MS, 86_400_000), Some(Milliseconds));
    // A time that is simply old fits no precision: no hint.
    assert_eq!(Precision::fitting((NOW_MS - 20 * 365 * 86_400_000) / 1000, Seconds, NOW_MS, 86_400_000), None);
    assert_eq!(Precision::fitting(0, Seconds, NOW_MS, 86_400_000), None);
    assert_eq!(crate::model::human_ms(53_000 * 365 * 86_400_000), "53,000 years");
    assert_eq!(crate::model::human_ms(86_400_000), "1 day");
    assert_eq!(crate::model::human_ms(90_000), "1 minute");
}

// ---------------------------------------------------------------------------------------------------------
// Lines, whitespace, comments.

#[test]
fn crlf_comments_blank_lines_and_whitespace() {
    let body = "# a comment\r\n\
                \r\n\
                \x20 \t# an indented comment\n\
                \n\
                \x20 m,a=b v=1 10  \r\n\
                m   v=2    20\t\r\n\
                m v=3 30\r";
    let v = parse(body.as_bytes(), Precision::Seconds, NOW_NS, &lim()).unwrap();
    let got: Vec<(Vec<(&str, &str)>, f64, i64)> = v.iter().map(|p| (tags(p), p.fields[0].1, p.timestamp)).collect();
    assert_eq!(got, vec![(vec![("a", "b")], 1.0, 10_000), (vec![], 2.0, 20_000), (vec![], 3.0, 30_000)]);
    assert_eq!(parse_ns(b"").unwrap(), vec![]);
    assert_eq!(parse_ns(b"\n\n# only comments\n").unwrap(), vec![]);
}

#[test]
fn a_full_point() {
    let p = one("cpu,host=h1,region=eu usage=58.13,count=3i,up=true 1451606400000000000");
    assert_eq!(
        p,
        Point {
            measurement: s("cpu"),
            tags: vec![(s("host"), s("h1")), (s("region"), s("eu"))],
            fields: vec![(s("usage"), 58.13), (s("count"), 3.0), (s("up"), 1.0)],
            timestamp: 1_451_606_400_000,
        }
    );
}

// ---------------------------------------------------------------------------------------------------------
// Errors: every kind, each with the right line number and the good prefix kept.

/// The name of every variant; a new variant fails to compile here until the error table covers it.
fn variant(k: &ErrorKind) -> &'static str {
    match k {
        ErrorKind::LineTooLong { .. } => "LineTooLong",
        ErrorKind::MissingMeasurement => "MissingMeasurement",
        ErrorKind::MissingFields => "MissingFields",
        ErrorKind::InvalidUtf8 { .. } => "InvalidUtf8",
        ErrorKind::ControlCharacter { .. } => "ControlCharacter",
        ErrorKind::NameTooLong { .. } => "NameTooLong",
        ErrorKind::InvalidTag { .. } => "InvalidTag",
        ErrorKind::DuplicateTag(_) => "DuplicateTag",
        ErrorKind::TagValueTooLong { .. } => "TagValueTooLong",
        ErrorKind::TooManyTags { .. } => "TooManyTags",
        ErrorKind::InvalidField { .. } => "InvalidField",
        ErrorKind::InvalidFieldValue { .. } => "InvalidFieldValue",
        ErrorKind::NonFiniteField { .. } => "NonFiniteField",
        ErrorKind::FieldOutOfRange { .. } => "FieldOutOfRange",
        ErrorKind::StringField { .. } => "StringField",
        ErrorKind::UnterminatedString { .. } => "UnterminatedString",
        ErrorKind::TooManyFields { .. } => "TooManyFields",
        ErrorKind::InvalidTimestamp(_) => "InvalidTimestamp",
        ErrorKind::TimestampOutOfRange(_) => "TimestampOutOfRange",
        ErrorKind::TimestampInFuture { .. } => "TimestampInFuture",
        ErrorKind::TrailingGarbage(_) => "TrailingGarbage",
    }
}
const ALL_VARIANTS: usize = 21;

fn error_table() -> Vec<(Vec<u8>, ErrorKind)> {
    let b = |x: &str| x.as_bytes().to_vec();
    let long = "x".repeat(257);
    let many_tags: String = (0..65).map(|i| format!(",t{i}=v")).collect();
    let many_fields: Vec<String> = (0..257).map(|i| format!("f{i}=1")).collect();
    let tag = |t: &str, problem| ErrorKind::InvalidTag { tag: s(t), problem };
    let field = |f: &str, problem| ErrorKind::InvalidField { field: s(f), problem };
    vec![
        (b(&format!("m v=1 {}", "1".repeat(70_000))), ErrorKind::LineTooLong { len: 70_006, max: 65_536 }),
        (b(",a=b v=1"), ErrorKind::MissingMeasurement),
        (b(" ,a=b v=1"), ErrorKind::MissingMeasurement),
        (b("m"), ErrorKind::MissingFields),
        (b("m,a=b"), ErrorKind::MissingFields),
        (b("m,a=b   "), ErrorKind::MissingFields),
        (b"m\xff v=1".to_vec(), ErrorKind::InvalidUtf8 { element: Element::Measurement }),
        (b"m,\xc3=b v=1".to_vec(), ErrorKind::InvalidUtf8 { element: Element::TagKey }),
        (b"m,a=\xe2\x82 v=1".to_vec(), ErrorKind::InvalidUtf8 { element: Element::TagValue }),
        (b"m \xf0\x9f=1".to_vec(), ErrorKind::InvalidUtf8 { element: Element::FieldKey }),
        (b"m\\ \xff v=1".to_vec(), ErrorKind::InvalidUtf8 { element: Element::Measurement }), // escaped path
        (b("m\tx v=1"), ErrorKind::ControlCharacter { element: Element::Measurement }),
        (b("m,a\r=b v=1"), ErrorKind::ControlCharacter { element: Element::TagKey }),
        (b("m,a=b\x01 v=1"), ErrorKind::ControlCharacter { element: Element::TagValue }),
        (b("m v\x7f=1"), ErrorKind::ControlCharacter { element: Element::FieldKey }),
        (
            b(&format!("{long} v=1")),
            ErrorKind::NameTooLong { element: Element::Measurement, name: format!("{}...", &long[..64]), max: 256 },
        ),
        (
            b(&format!("m,{long}=a v=1")),
            ErrorKind::NameTooLong { element: Element::TagKey, name: format!("{}...", &long[..64]), max: 256 },
        ),
        (
            b(&format!("m {long}=1")),
            ErrorKind::NameTooLong { element: Element::FieldKey, name: format!("{}...", &long[..64]), max: 256 },
        ),
        (b("m,a v=1"), tag("a", TagProblem::MissingEquals)),
        (b("m,a"), tag("a", TagProblem::MissingEquals)),
        (b(r"m,a\ b,c=d v=1"), tag("a b", TagProblem::MissingEquals)),
        (b("m,=b v=1"), tag("", TagProblem::EmptyKey)),
        (b("m,a=b, v=1"), tag("", TagProblem::EmptyKey)),
        (b("m, v=1"), tag("", TagProblem::EmptyKey)),
        (b("m,a= v=1"), tag("a", TagProblem::EmptyValue)),
        (b("m,a=,b=c v=1"), tag("a", TagProblem::EmptyValue)),
        (b("m,a=b=c v=1"), tag("a", TagProblem::UnescapedEquals)),
        (b("m,b=1,a=1,b=2 v=1"), ErrorKind::DuplicateTag(s("b"))),
        (b(&format!("m,t={} v=1", "v".repeat(1025))), ErrorKind::TagValueTooLong { tag: s("t"), max: 1024 }),
        (b(&format!("m{many_tags} v=1")), ErrorKind::TooManyTags { max: 64 }),
        (b("m v"), field("v", FieldProblem::MissingEquals)),
        (b("m v 1"), field("v", FieldProblem::MissingEquals)),
        (b("m v,w=1"), field("v", FieldProblem::MissingEquals)),
        (b("m =1"), field("", FieldProblem::EmptyKey)),
        (b("m v=1,"), field("", FieldProblem::EmptyKey)),
        (b("m v=1,,w=2"), field("", FieldProblem::EmptyKey)),
        (b("m v="), field("v", FieldProblem::EmptyValue)),
        (b("m v=,w=1"), field("v", FieldProblem::EmptyValue)),
        (b("m v= 1"), field("v", FieldProblem::EmptyValue)),
        (b("m v=oops"), ErrorKind::InvalidFieldValue { field: s("v"), value: s("oops") }),
        (b"m v=1\xff".to_vec(), ErrorKind::InvalidFieldValue { field: s("v"), value: s("1\u{FFFD}") }),
        (b("m v=inf"), ErrorKind::NonFiniteField { field: s("v"), value: s("inf") }),
        (
            b("m v=9223372036854775808i"),
            ErrorKind::FieldOutOfRange { field: s("v"), value: s("9223372036854775808i"), kind: NumberKind::Integer },
        ),
        (b(r#"m v=1,msg="a b""#), ErrorKind::StringField { field: s("msg") }),
        (b(r#"m msg="a b"#), ErrorKind::UnterminatedString { field: s("msg") }),
        (b(&format!("m {}", many_fields.join(","))), ErrorKind::TooManyFields { max: 256 }),
        (b("m v=1 x"), ErrorKind::InvalidTimestamp(s("x"))),
        (b("m v=1 9223372036854775808"), ErrorKind::TimestampOutOfRange(s("9223372036854775808"))),
        (b("m v=1 1 x"), ErrorKind::TrailingGarbage(s("x"))),
        // Milliseconds sent as seconds (the table parses with precision s).
        (
            b("m v=1 1700000000123"),
            ErrorKind::TimestampInFuture {
                raw: s("1700000000123"),
                precision: Precision::Seconds,
                ahead_ms: 1_700_000_000_123_000 - NOW_MS,
                max_ms: 86_400_000,
                fits: Some(Precision::Milliseconds),
            },
        ),
    ]
}

#[test]
fn every_error_names_its_line_and_keeps_the_good_prefix() {
    let mut seen = std::collections::BTreeSet::new();
    for (bad, want) in error_table() {
        // Line 3 of 5; CRLF endings on the good lines.
        let mut body = b"m v=1 1\r\nm,a=b v=2 2\r\n".to_vec();
        body.extend_from_slice(&bad);
        body.extend_from_slice(b"\nm v=4 4\nm v=5 5\n");
        let mut out = Vec::new();
        let e = parse_into(&body, Precision::Seconds, NOW_NS, &Limits::default(), &mut out).unwrap_err();
        let shown = String::from_utf8_lossy(&bad[..bad.len().min(60)]).into_owned();
        assert_eq!(e.kind, want, "{shown:?}");
        assert_eq!(e.line, 3, "{shown:?}");
        assert!(e.to_string().starts_with("line 3: "), "{e}");
        let good: Vec<(f64, i64)> = out.iter().map(|p| (p.fields[0].1, p.timestamp)).collect();
        assert_eq!(good, vec![(1.0, 1_000), (2.0, 2_000)], "{shown:?}");
        seen.insert(variant(&e.kind));
    }
    assert_eq!(seen.len(), ALL_VARIANTS, "error kinds without a case: the table misses one of {seen:?}");
}

#[test]
fn line_numbers_count_comments_and_blank_lines() {
    let mut out = Vec::new();
    let body = b"# header\n\nm v=1 1\r\n   \nm v=oops\nm v=3";
    let e = parse_into(body, Precision::Seconds, NOW_NS, &lim(), &mut out).unwrap_err();
    assert_eq!(e.line, 5);
    assert_eq!(out.len(), 1);
    // `parse_into` appends: earlier contents stay.
    let mut out = vec![one("pre v=0 0")];
    parse_into(b"m v=1 1", Precision::Seconds, 0, &lim(), &mut out).unwrap();
    assert_eq!(out.len(), 2);
}

#[test]
fn error_messages_stay_short_on_huge_input() {
    let junk = "z".repeat(50_000);
    let e = parse_ns(format!("m v={junk}").as_bytes()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.len() < 300, "{} bytes: {msg}", msg.len());
    assert!(msg.contains(&format!("\"{}...\"", "z".repeat(64))), "{msg}");
    // Control characters are shown escaped, so a message is one printable line.
    let e = parse_ns(b"m v=1 1\x1b[2J").unwrap_err();
    assert!(e.to_string().contains(r"\u{1b}"), "{e}");
}

// ---------------------------------------------------------------------------------------------------------
// Limits: at the limit is fine, one over is refused.

#[test]
fn limits_are_enforced_exactly() {
    let l = Limits {
        max_line_bytes: 40,
        max_tags: 2,
        max_fields: 3,
        max_name_bytes: 4,
        max_tag_value_bytes: 3,
        max_future_ms: i64::MAX,
    };
    let run = |line: &str| parse(line.as_bytes(), Precision::Seconds, 0, &l).map(|_| ()).map_err(|e| e.kind);
    // Line length counts the raw line (a trailing '\r' included), not its newline.
    let at = format!("m v=1.{}", "0".repeat(34));
    assert_eq!(at.len(), 40);
    assert_eq!(run(&at), Ok(()));
    assert_eq!(run(&format!("{at}\n")), Ok(()));
    assert_eq!(run(&format!("{at}\r\n")), Err(ErrorKind::LineTooLong { len: 41, max: 40 }));
    assert_eq!(run(&format!("{at}1")), Err(ErrorKind::LineTooLong { len: 41, max: 40 }));
    assert_eq!(run("m,a=1,b=2 v=1"), Ok(()));
    assert_eq!(run("m,a=1,b=2,c=3 v=1"), Err(ErrorKind::TooManyTags { max: 2 }));
    assert_eq!(run("m a=1,b=2,c=3"), Ok(()));
    assert_eq!(run("m a=1,b=2,c=3,d=4"), Err(ErrorKind::TooManyFields { max: 3 }));
    assert_eq!(run("m a=1,a=2,a=3,a=4"), Err(ErrorKind::TooManyFields { max: 3 }), "duplicates count");
    assert_eq!(run("mmmm,kkkk=v ffff=1"), Ok(()));
    let too_long = |element, name: &str| Err(ErrorKind::NameTooLong { element, name: s(name), max: 4 });
    assert_eq!(run("mmmmm v=1"), too_long(Element::Measurement, "mmmmm"));
    assert_eq!(run("m,kkkkk=v v=1"), too_long(Element::TagKey, "kkkkk"));
    assert_eq!(run("m fffff=1"), too_long(Element::FieldKey, "fffff"));
    // Limits apply after unescaping: `a\ b` is 3 bytes.
    assert_eq!(run(r"m,k=a\ b v=1"), Ok(()));
    assert_eq!(run("m,k=abc v=1"), Ok(()));
    assert_eq!(run("m,k=abcd v=1"), Err(ErrorKind::TagValueTooLong { tag: s("k"), max: 3 }));
    // Comments are skipped whatever their length.
    assert_eq!(run(&format!("# {}", "c".repeat(100))), Ok(()));
}

// ---------------------------------------------------------------------------------------------------------
// Writing.

#[test]
fn write_line_format_and_escaping() {
    let p = Point {
        measurement: s("cpu load,x=y"),
        tags: vec![(s("a b"), s("c,d=e")), (s("path"), s(r"C:\dir"))],
        fields: vec![(s("f=1"), 58.13), (s("n"), 3.0), (s("tiny"), 1e-7), (s("huge"), -1.5e300)],
        timestamp: -5,
    };
    let mut out = String::new();
    write_line(&p, &mut out);
    assert_eq!(out, "cpu\\ load\\,x=y,a\\ b=c\\,d\\=e,path=C:\\dir f\\=1=58.13,n=3.0,tiny=1e-7,huge=-1.5e300 -5\n");
    assert_eq!(parse(out.as_bytes(), Precision::Milliseconds, 0, &lim()).unwrap(), vec![p]);
}

#[test]
fn write_line_keeps_unrepresentable_points_on_one_line() {
    let p = Point {
        measurement: s("m"),
        tags: vec![(s("a"), s("x\ny")), (s("b"), s("ends\\"))],
        fields: vec![(s("nan"), f64::NAN), (s("v"), 1.0), (s("inf"), f64::INFINITY)],
        timestamp: 7,
    };
    let mut out = String::new();
    write_line(&p, &mut out);
    assert_eq!(out, "m,a=x\u{FFFD}y,b=ends\u{FFFD} v=1.0 7\n");
    let back = parse(out.as_bytes(), Precision::Milliseconds, 0, &lim()).unwrap();
    assert_eq!(tags(&back[0]), vec![("a", "x\u{FFFD}y"), ("b", "ends\u{FFFD}")]);
    // No finite field: nothing at all rather than a line that cannot parse.
    let mut out = String::new();
    write_line(&Point { fields: vec![(s("v"), f64::NAN)], ..p }, &mut out);
    assert_eq!(out, "");
}

// ---------------------------------------------------------------------------------------------------------
// Properties.

/// Printable names, including every byte that needs escaping, quotes, `#`, backslashes and non-ASCII; not
/// ending with a backslash (line protocol cannot express that).
fn name() -> impl Strategy<Value = String> {
    "[ -~é🍭]{1,12}".prop_filter("no trailing backslash", |s| !s.ends_with('\\'))
}

fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        (-10_000_000i64..10_000_000, 0i32..8).prop_map(|(m, k)| m as f64 / 10f64.powi(k)),
        any::<i64>().prop_map(|v| v as f64),
        Just(-0.0),
        Just(5e-324),
        Just(f64::MAX),
        Just(f64::MIN),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn prop_write_then_parse_round_trips_exactly(
        m in name().prop_filter("not a comment", |m| !m.starts_with('#')),
        tags in proptest::collection::btree_map(name(), name(), 0..6),
        fields in proptest::collection::vec((name(), finite_f64()), 1..6),
        ts in any::<i64>(),
    ) {
        // Unique field keys, in generated (not sorted) order: the parser keeps input order.
        let mut seen = std::collections::HashSet::new();
        let fields: Vec<(SmolStr, f64)> =
            fields.into_iter().filter(|(k, _)| seen.insert(k.clone())).map(|(k, v)| (k.into(), v)).collect();
        let tags = tags.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let p = Point { measurement: m.into(), tags, fields, timestamp: ts };
        let mut line = String::new();
        write_line(&p, &mut line);
        let back = parse(line.as_bytes(), Precision::Milliseconds, 0, &lim())
            .map_err(|e| TestCaseError::fail(format!("{e} in {line:?}")))?;
        prop_assert_eq!(back.len(), 1);
        let b = &back[0];
        prop_assert_eq!(&b.measurement, &p.measurement);
        prop_assert_eq!(&b.tags, &p.tags);
        prop_assert_eq!(b.timestamp, p.timestamp);
        let bits = |f: &[(SmolStr, f64)]| f.iter().map(|(k, v)| (k.clone(), v.to_bits())).collect::<Vec<_>>();
        prop_assert_eq!(bits(&b.fields), bits(&p.fields), "{}", line);
    }

    /// The parser and `Limits::check` hold points to the same limits: whatever parses (with small limits, so
    /// some lines are refused) passes the check, and a line refused for a limit gives a point the check refuses.
    #[test]
    fn prop_parsed_points_pass_the_structured_check(
        m in name().prop_filter("not a comment", |m| !m.starts_with('#')),
        tags in proptest::collection::btree_map(name(), name(), 0..5),
        fields in proptest::collection::vec((name(), finite_f64()), 1..5),
        ahead in -86_400_000i64..200_000_000,
    ) {
        let limits = Limits { max_tags: 3, max_fields: 3, max_name_bytes: 8, max_tag_value_bytes: 8, ..Limits::default() };
        let mut seen = std::collections::HashSet::new();
        let fields: Vec<(SmolStr, f64)> =
            fields.into_iter().filter(|(k, _)| seen.insert(k.clone())).map(|(k, v)| (k.into(), v)).collect();
        let tags = tags.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let p = Point { measurement: m.into(), tags, fields, timestamp: NOW_MS + ahead };
        let mut line = String::new();
        write_line(&p, &mut line);
        let parsed = parse(line.as_bytes(), Precision::Milliseconds, NOW_NS, &limits);
        let checked = limits.check(&p, NOW_MS);
        match parsed {
            Ok(back) => {
                prop_assert_eq!(back.len(), 1);
                prop_assert!(checked.is_ok(), "parsed but refused: {:?} for {}", checked, line);
                prop_assert!(limits.check(&back[0], NOW_MS).is_ok());
            }
            Err(e) => prop_assert!(checked.is_err(), "{} refused by the parser ({}) but not by the check", line, e),
        }
    }

    #[test]
    fn prop_float_text_parses_like_the_standard_library(
        neg in any::<bool>(),
        int in "[0-9]{0,25}",
        frac in proptest::option::of("[0-9]{0,25}"),
        exp in proptest::option::of(("[eE]", "[+-]?", 0u32..400)),
    ) {
        let mut text = String::from(if neg { "-" } else { "" });
        text.push_str(&int);
        if let Some(f) = &frac {
            text.push('.');
            text.push_str(f);
        }
        prop_assume!(text.bytes().any(|b| b.is_ascii_digit()));
        if let Some((e, sign, n)) = &exp {
            text.push_str(&format!("{e}{sign}{n}"));
        }
        let want: f64 = text.parse().unwrap();
        let got = parse_value(text.as_bytes());
        if want.is_finite() {
            prop_assert_eq!(got.map(f64::to_bits), Ok(want.to_bits()), "{}", text);
        } else {
            prop_assert_eq!(got, Err(ValueError::OutOfRange(NumberKind::Float)), "{}", text);
        }
    }

    #[test]
    fn prop_integers_convert_like_a_cast(i in any::<i64>(), u in any::<u64>()) {
        prop_assert_eq!(parse_value(format!("{i}i").as_bytes()), Ok(i as f64));
        prop_assert_eq!(parse_value(format!("{u}u").as_bytes()), Ok(u as f64));
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_invariants(&body)?;
    }

    #[test]
    fn prop_line_protocol_shaped_text_never_panics(body in "[a-zA-Z0-9 ,=\\\\\"#.+\\-_ieuTF\t\r\n\u{1}é]{0,300}") {
        check_invariants(body.as_bytes())?;
    }
}

/// Whatever the body: no panic, and on error a plausible line number with only earlier lines' points kept.
fn check_invariants(body: &[u8]) -> Result<(), TestCaseError> {
    let lines = body.split(|&b| b == b'\n').count();
    let limits = Limits {
        max_line_bytes: 200,
        max_tags: 3,
        max_fields: 3,
        max_name_bytes: 8,
        max_tag_value_bytes: 8,
        max_future_ms: i64::MAX,
    };
    let mut out = Vec::new();
    match parse_into(body, Precision::Seconds, NOW_NS, &limits, &mut out) {
        Ok(()) => prop_assert!(out.len() <= lines),
        Err(e) => {
            prop_assert!(e.line >= 1 && e.line <= lines, "line {} of {}", e.line, lines);
            prop_assert!(out.len() < e.line);
            let _ = e.to_string();
        }
    }
    for p in &out {
        prop_assert!(!p.measurement.is_empty() && !p.fields.is_empty());
        prop_assert!(p.tags.windows(2).all(|w| w[0].0 < w[1].0), "tags sorted and unique");
        prop_assert!(p.fields.iter().all(|(_, v)| v.is_finite()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Throughput.

/// TSBS-shaped lines (11 tags, 10 float fields). Run with
/// `cargo test --release -- --ignored --nocapture throughput`; it prints the best of 5 runs.
#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn throughput() {
    let line = "cpu,hostname=host_1,region=us-west-1,datacenter=us-west-1a,rack=4,os=Ubuntu16.04LTS,arch=x64,\
                team=SF,service=3,service_version=1,service_environment=test usage_user=58.13,usage_system=2.4,\
                usage_idle=24.2,usage_nice=61.1,usage_iowait=22.5,usage_irq=63.6,usage_softirq=6.5,\
                usage_steal=44.3,usage_guest=80.2,usage_guest_nice=38.1 1451606400\n";
    let lines = 100_000;
    let body = line.repeat(lines);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let v = parse(body.as_bytes(), Precision::Seconds, 0, &lim()).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(v.len(), lines);
        assert_eq!(v[0].fields.len(), 10);
        drop(v);
    }
    let fields = (lines * 10) as f64;
    eprintln!(
        "line protocol: {:.2} M fields/s, {:.2} M lines/s, {:.0} MB/s ({lines} lines in {:.1} ms)",
        fields / best / 1e6,
        lines as f64 / best / 1e6,
        body.len() as f64 / best / 1e6,
        best * 1e3
    );
}

#[test]
fn structured_points_are_checked_against_every_limit() {
    let limits = Limits { max_tags: 2, max_fields: 2, max_name_bytes: 4, max_tag_value_bytes: 3, ..Limits::default() };
    let point = |m: &str, tags: &[(&str, &str)], fields: &[&str], ts: i64| Point {
        measurement: m.into(),
        tags: tags.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        fields: fields.iter().map(|f| ((*f).into(), f64::NAN)).collect(),
        timestamp: ts,
    };
    // NaN values pass (Prometheus's staleness marker); so does a point at the bound.
    assert_eq!(limits.check(&point("m", &[("a", "x")], &["v"], NOW_MS + 86_400_000), NOW_MS), Ok(()));
    let cases = [
        (point("", &[], &["v"], NOW_MS), PointError::EmptyName { element: Element::Measurement }),
        (
            point("mmmmm", &[], &["v"], NOW_MS),
            PointError::NameTooLong { element: Element::Measurement, name: s("mmmmm"), max: 4 },
        ),
        (point("m", &[("", "x")], &["v"], NOW_MS), PointError::EmptyName { element: Element::TagKey }),
        (
            point("m", &[("kkkkk", "x")], &["v"], NOW_MS),
            PointError::NameTooLong { element: Element::TagKey, name: s("kkkkk"), max: 4 },
        ),
        (point("m", &[("a", "")], &["v"], NOW_MS), PointError::EmptyTagValue { tag: s("a") }),
        (point("m", &[("a", "xxxx")], &["v"], NOW_MS), PointError::TagValueTooLong { tag: s("a"), max: 3 }),
        (point("m", &[("a", "x"), ("a", "y")], &["v"], NOW_MS), PointError::DuplicateTag(s("a"))),
        (
            point("m", &[("a", "x"), ("b", "x"), ("c", "x")], &["v"], NOW_MS),
            PointError::TooManyTags { count: 3, max: 2 },
        ),
        (point("m", &[], &[], NOW_MS), PointError::NoFields),
        (point("m", &[], &["a", "b", "c"], NOW_MS), PointError::TooManyFields { count: 3, max: 2 }),
        (point("m", &[], &[""], NOW_MS), PointError::EmptyName { element: Element::FieldKey }),
        (
            point("m", &[], &["fffff"], NOW_MS),
            PointError::NameTooLong { element: Element::FieldKey, name: s("fffff"), max: 4 },
        ),
        (
            point("m", &[], &["v"], NOW_MS * 1000),
            PointError::InFuture {
                timestamp_ms: NOW_MS * 1000,
                ahead_ms: NOW_MS * 999,
                max_ms: 86_400_000,
                fits: Some(Precision::Microseconds),
            },
        ),
    ];
    for (p, want) in cases {
        assert_eq!(limits.check(&p, NOW_MS), Err(want), "{p:?}");
    }
    let e = limits.check(&point("m", &[], &["v"], NOW_MS * 1000), NOW_MS).unwrap_err().to_string();
    assert!(e.contains("reads as a current time in us"), "{e}");
}
