//! Tests of the parser: the AST of whole queries, each clause, SHOW forms, literals, precedence, error positions
//! and messages, and a property test that no input makes it panic.

use proptest::prelude::*;

use super::parse;
use crate::ast::{BinOp, Expr, Fill, IdentKind, NameMatch, Select, Source, Statement, TagGroup, TimeGroup};
use crate::error::ParseError;

// ---- helpers -----------------------------------------------------------------------------------------------------

/// Renders an expression as an S-expression: `(AND (= region 'us-west') (> time (- now() 600000ms)))`.
/// Integers print bare (`5`), floats with a point (`5.0`), durations in milliseconds (`600000ms`), regexes as
/// `/pattern/`, casts as `name::tag`, negations as `(neg x)`.
fn sx(e: &Expr) -> String {
    match e {
        Expr::Ident { name, kind, .. } => match kind {
            IdentKind::Any => name.clone(),
            IdentKind::Tag => format!("{name}::tag"),
            IdentKind::Field => format!("{name}::field"),
        },
        Expr::Wildcard { .. } => "*".to_string(),
        Expr::Number { value, .. } => format!("{value:?}"),
        Expr::Integer { value, .. } => value.to_string(),
        Expr::Str { value, .. } => format!("'{value}'"),
        Expr::Duration { ms, .. } => format!("{ms}ms"),
        Expr::Regex { re, .. } => format!("/{}/", re.as_str()),
        Expr::Now { .. } => "now()".to_string(),
        Expr::Call { name, args, .. } => format!("{name}({})", args.iter().map(sx).collect::<Vec<_>>().join(", ")),
        Expr::Binary { op, lhs, rhs, .. } => format!("({} {} {})", op.symbol(), sx(lhs), sx(rhs)),
        Expr::Neg { expr, .. } => format!("(neg {})", sx(expr)),
        Expr::Bool { value, .. } => value.to_string(),
    }
}

fn one(q: &str) -> Statement {
    let mut statements = parse(q).unwrap_or_else(|e| panic!("{q:?}: {e}"));
    assert_eq!(statements.len(), 1, "{q:?}");
    statements.remove(0)
}

fn select(q: &str) -> Select {
    match one(q) {
        Statement::Select(s) => *s,
        other => panic!("{q:?}: not a SELECT: {other:?}"),
    }
}

/// The only field's expression, rendered.
fn field(q: &str) -> String {
    let s = select(q);
    assert_eq!(s.fields.len(), 1, "{q:?}");
    sx(&s.fields[0].expr)
}

/// The WHERE condition of `SELECT x FROM m WHERE <cond>`, rendered.
fn cond(c: &str) -> String {
    sx(select(&format!("SELECT x FROM m WHERE {c}")).condition.as_ref().expect("a condition"))
}

fn fields(s: &Select) -> Vec<(String, Option<String>)> {
    s.fields.iter().map(|f| (sx(&f.expr), f.alias.clone())).collect()
}

fn sources(from: &[Source]) -> Vec<String> {
    from.iter()
        .map(|s| match s {
            Source::Name(n) => n.clone(),
            Source::Regex(r) => format!("/{}/", r.as_str()),
        })
        .collect()
}

fn name_match(m: &NameMatch) -> String {
    match m {
        NameMatch::Eq(n) => format!("= {n}"),
        NameMatch::Ne(n) => format!("!= {n}"),
        NameMatch::In(ns) => format!("IN {}", ns.join(",")),
        NameMatch::Re(r) => format!("=~ /{}/", r.as_str()),
        NameMatch::NotRe(r) => format!("!~ /{}/", r.as_str()),
    }
}

fn err(q: &str) -> ParseError {
    match parse(q) {
        Ok(s) => panic!("{q:?} parsed: {s:?}"),
        Err(e) => {
            assert!(e.pos <= q.len() && q.is_char_boundary(e.pos), "{q:?}: bad position {}", e.pos);
            e
        }
    }
}

/// Asserts that `q` fails at the first occurrence of `at` (or at the end when `at` is empty) with a message
/// containing `message`.
#[track_caller]
fn assert_err(q: &str, at: &str, message: &str) {
    let e = err(q);
    let pos = if at.is_empty() { q.len() } else { q.find(at).unwrap_or_else(|| panic!("{at:?} not in {q:?}")) };
    assert_eq!(e.pos, pos, "{q:?}: {e}");
    assert!(e.message.contains(message), "{q:?}: message {:?} lacks {message:?}", e.message);
}

fn duration(e: &Expr) -> (i64, i128, usize) {
    match e {
        Expr::Duration { ms, nanos, pos } => (*ms, *nanos, *pos),
        other => panic!("not a duration: {other:?}"),
    }
}

// ---- the examples of the brief -------------------------------------------------------------------------------

#[test]
fn mean_grouped_by_time_and_host() {
    let q = "SELECT mean(usage_user) FROM cpu WHERE region = 'us-west' AND time > now() - 10m GROUP BY time(1m), host";
    let s = select(q);
    assert_eq!(fields(&s), [("mean(usage_user)".to_string(), None)]);
    assert_eq!(sources(&s.from), ["cpu"]);
    assert_eq!(sx(s.condition.as_ref().unwrap()), "(AND (= region 'us-west') (> time (- now() 600000ms)))");
    assert_eq!(s.group_by.time, Some(TimeGroup { interval_ms: 60_000, offset_ms: 0, pos: q.find("time(").unwrap() }));
    assert_eq!(s.group_by.tags, TagGroup::Tags(vec!["host".to_string()]));
    assert_eq!(s.fill, Fill::Null);
    assert!(!s.order_desc);
    assert_eq!((s.limit, s.offset, s.slimit, s.soffset), (None, None, None, None));
    assert!(s.having.is_none() && s.tz.is_none());

    // Positions: the call at its name, the binary expressions at their operators, the literals at their start.
    let Expr::Call { pos, args, .. } = &s.fields[0].expr else { panic!() };
    assert_eq!(*pos, q.find("mean").unwrap());
    assert_eq!(args[0].pos(), q.find("usage_user").unwrap());
    let Expr::Binary { op: BinOp::And, lhs, rhs, pos } = s.condition.as_ref().unwrap() else { panic!() };
    assert_eq!(*pos, q.find("AND").unwrap());
    assert_eq!(lhs.pos(), q.find("= 'us").unwrap());
    let Expr::Binary { rhs: minus, .. } = rhs.as_ref() else { panic!() };
    let Expr::Binary { op: BinOp::Sub, lhs: now, rhs: ten, pos } = minus.as_ref() else { panic!() };
    assert_eq!(*pos, q.find("- 10m").unwrap());
    assert_eq!(now.pos(), q.find("now").unwrap());
    assert_eq!(duration(ten), (600_000, 600_000_000_000, q.find("10m").unwrap()));
}

#[test]
fn arithmetic_alias_qualified_source_regex_and_every_clause() {
    let q = r#"SELECT mean(usage_user) + mean(usage_system) AS busy FROM "telegraf"."autogen"."cpu" WHERE host =~ /web-\d+/ AND (dc = 'a' OR dc != 'b') GROUP BY time(5m, -1m), * fill(previous) ORDER BY time DESC LIMIT 10 OFFSET 2 SLIMIT 3"#;
    let s = select(q);
    assert_eq!(fields(&s), [("(+ mean(usage_user) mean(usage_system))".to_string(), Some("busy".to_string()))]);
    assert_eq!(sources(&s.from), ["cpu"]);
    assert_eq!(sx(s.condition.as_ref().unwrap()), r"(AND (=~ host /web-\d+/) (OR (= dc 'a') (!= dc 'b')))");
    assert_eq!(
        s.group_by.time,
        Some(TimeGroup { interval_ms: 300_000, offset_ms: -60_000, pos: q.find("time(5m").unwrap() })
    );
    assert_eq!(s.group_by.tags, TagGroup::All);
    assert_eq!(s.fill, Fill::Previous);
    assert!(s.order_desc);
    assert_eq!((s.limit, s.offset, s.slimit, s.soffset), (Some(10), Some(2), Some(3), None));

    // The regex works as written, and sits where it was written.
    let Expr::Binary { lhs, .. } = s.condition.as_ref().unwrap() else { panic!() };
    let Expr::Binary { op: BinOp::ReMatch, rhs, .. } = lhs.as_ref() else { panic!() };
    let Expr::Regex { re, pos } = rhs.as_ref() else { panic!() };
    assert_eq!(*pos, q.find("/web").unwrap());
    assert!(re.is_match("web-12") && !re.is_match("web-x"));
}

#[test]
fn window_function_time_bounds_and_fill_linear() {
    let q = "SELECT exponential_moving_average(mean(x), 5) FROM m WHERE time >= '2024-01-01T00:00:00Z' AND time < 1704067200000ms GROUP BY time(1h) fill(linear)";
    let s = select(q);
    assert_eq!(fields(&s), [("exponential_moving_average(mean(x), 5)".to_string(), None)]);
    assert_eq!(sx(s.condition.as_ref().unwrap()), "(AND (>= time '2024-01-01T00:00:00Z') (< time 1704067200000ms))");
    let Expr::Binary { rhs, .. } = s.condition.as_ref().unwrap() else { panic!() };
    let Expr::Binary { rhs: bound, .. } = rhs.as_ref() else { panic!() };
    assert_eq!(duration(bound), (1_704_067_200_000, 1_704_067_200_000_000_000, q.find("1704").unwrap()));
    assert_eq!(s.group_by.time.map(|t| (t.interval_ms, t.offset_ms)), Some((3_600_000, 0)));
    assert_eq!(s.group_by.tags, TagGroup::None);
    assert_eq!(s.fill, Fill::Linear);
}

#[test]
fn several_aggregates_with_parameters() {
    let s = select("SELECT percentile(latency, 99.9), top(x, 3) FROM m");
    assert_eq!(fields(&s), [("percentile(latency, 99.9)".to_string(), None), ("top(x, 3)".to_string(), None)]);
    let Expr::Call { args, .. } = &s.fields[0].expr else { panic!() };
    assert!(matches!(args[1], Expr::Number { value, .. } if value == 99.9));
    let Expr::Call { args, .. } = &s.fields[1].expr else { panic!() };
    assert!(matches!(args[1], Expr::Integer { value: 3, .. }));
}

#[test]
fn having() {
    let q = "SELECT last(value) FROM up GROUP BY instance HAVING last(value) = 0";
    let s = select(q);
    assert_eq!(s.group_by.tags, TagGroup::Tags(vec!["instance".to_string()]));
    assert_eq!(sx(s.having.as_ref().unwrap()), "(= last(value) 0)");
    assert_eq!(s.having.as_ref().unwrap().pos(), q.find("= 0").unwrap());
    // fill may come before or after HAVING, once.
    let s = select("SELECT last(v) FROM up GROUP BY time(1m) fill(none) HAVING last(v) > 1 ORDER BY time LIMIT 1");
    assert_eq!((s.fill, s.limit), (Fill::None, Some(1)));
    assert_eq!(sx(s.having.as_ref().unwrap()), "(> last(v) 1)");
    let s = select("SELECT last(v) FROM up GROUP BY time(1m) HAVING last(v) > 1 fill(0)");
    assert_eq!(s.fill, Fill::Value(0.0));
    assert_err("SELECT last(v) FROM up GROUP BY time(1m) fill(0) HAVING last(v) > 1 fill(1)", "fill(1)", "twice");
}

// ---- statements ----------------------------------------------------------------------------------------------

#[test]
fn several_statements() {
    let stmts = parse("SELECT a FROM x; SELECT b FROM y;").unwrap();
    assert_eq!(stmts.len(), 2);
    let Statement::Select(first) = &stmts[0] else { panic!() };
    let Statement::Select(second) = &stmts[1] else { panic!() };
    assert_eq!((fields(first)[0].0.as_str(), sources(&first.from)), ("a", vec!["x".to_string()]));
    assert_eq!((fields(second)[0].0.as_str(), sources(&second.from)), ("b", vec!["y".to_string()]));
    assert_eq!(second.fields[0].expr.pos(), "SELECT a FROM x; SELECT ".len());

    let stmts = parse("SHOW DATABASES ;\n SHOW MEASUREMENTS;;  \n").unwrap();
    assert!(matches!(stmts[..], [Statement::ShowDatabases, Statement::ShowMeasurements { .. }]));
}

#[test]
fn empty_queries_are_errors() {
    for q in ["", "   ", ";", " ; ;", "-- only a comment", "\n-- one\n  -- two\n"] {
        let e = err(q);
        assert_eq!((e.pos, e.message.as_str()), (q.len(), "empty query"), "{q:?}");
    }
}

#[test]
fn keywords_are_case_insensitive_and_comments_are_skipped() {
    let q = "select MEAN(x) As \"m\" -- the mean\nfrom cpu wHeRe a = TRUE and b = false Or c = 1\n\
             group by TIME(1m), host FILL(NONE) order BY time asc limit 5 -- end";
    let s = select(q);
    assert_eq!(fields(&s), [("mean(x)".to_string(), Some("m".to_string()))]);
    assert_eq!(sx(s.condition.as_ref().unwrap()), "(OR (AND (= a true) (= b false)) (= c 1))");
    assert_eq!(s.group_by.time.map(|t| t.interval_ms), Some(60_000));
    assert_eq!(s.group_by.tags, TagGroup::Tags(vec!["host".to_string()]));
    assert_eq!((s.fill, s.order_desc, s.limit), (Fill::None, false, Some(5)));
}

#[test]
fn wildcard_and_aliases() {
    let s = select("SELECT * FROM m");
    assert!(matches!(s.fields[..], [crate::ast::Field { expr: Expr::Wildcard { pos: 7 }, alias: None }]));
    let s = select(r#"SELECT count(*), x AS "my alias", "y z" AS w FROM m"#);
    assert_eq!(
        fields(&s),
        [
            ("count(*)".to_string(), None),
            ("x".to_string(), Some("my alias".to_string())),
            ("y z".to_string(), Some("w".to_string()))
        ]
    );
    assert_err("SELECT x AS from FROM m", "from", "expected an alias, found \"from\"");
    assert_err("SELECT x AS", "", "unexpected end of query, expected an alias");
}

#[test]
fn source_forms() {
    let s = select(
        r#"SELECT x FROM cpu, "my.measurement", telegraf.autogen.mem, "db"."rp"."disk", db..net, /^sys.*/, db.rp./^k/"#,
    );
    assert_eq!(sources(&s.from), ["cpu", "my.measurement", "mem", "disk", "net", "/^sys.*/", "/^k/"]);
    assert_eq!(sources(&select("SELECT x FROM rp.m").from), ["m"]);
    assert_err("SELECT x FROM a.b.c.d", ".d", "at most three parts");
    assert_err("SELECT x FROM a.", "", "unexpected end of query, expected a measurement name or /regex/");
    assert_err("SELECT x FROM where", "where", "expected a measurement name or /regex/, found \"where\"");
    assert_err("SELECT x FROM 'm'", "'m'", "expected a measurement name or /regex/");
}

#[test]
fn group_by_forms() {
    let s = select(r#"SELECT mean(x) FROM m GROUP BY "host", region::tag, time(1d, 2h)"#);
    assert_eq!(s.group_by.tags, TagGroup::Tags(vec!["host".to_string(), "region".to_string()]));
    assert_eq!(s.group_by.time.map(|t| (t.interval_ms, t.offset_ms)), Some((86_400_000, 7_200_000)));
    assert_eq!(select("SELECT x FROM m GROUP BY host, *").group_by.tags, TagGroup::All);
    assert_eq!(select("SELECT x FROM m GROUP BY *").group_by.tags, TagGroup::All);
    let s = select("SELECT mean(x) FROM m GROUP BY time(1h30m)");
    assert_eq!(s.group_by.time.map(|t| t.interval_ms), Some(5_400_000));
    assert_eq!(s.group_by.tags, TagGroup::None);
    // A tag may be called fill, since it follows a comma.
    let s = select("SELECT x FROM m GROUP BY host, fill fill(1.5)");
    assert_eq!(s.group_by.tags, TagGroup::Tags(vec!["host".to_string(), "fill".to_string()]));
    assert_eq!(s.fill, Fill::Value(1.5));
}

#[test]
fn fill_options() {
    for (text, fill) in [
        ("null", Fill::Null),
        ("none", Fill::None),
        ("previous", Fill::Previous),
        ("LINEAR", Fill::Linear),
        ("0", Fill::Value(0.0)),
        ("-1", Fill::Value(-1.0)),
        ("2.5", Fill::Value(2.5)),
        ("-0.5", Fill::Value(-0.5)),
    ] {
        assert_eq!(select(&format!("SELECT mean(x) FROM m GROUP BY time(1m) fill({text})")).fill, fill, "{text}");
    }
    // Without GROUP BY, fill is still accepted (the planner judges).
    assert_eq!(select("SELECT x FROM m fill(none)").fill, Fill::None);
}

#[test]
fn order_limits_and_tz() {
    let s = select("SELECT x FROM m ORDER BY time DESC LIMIT 0 OFFSET 5 SLIMIT 2 SOFFSET 1 tz('Europe/Paris')");
    assert!(s.order_desc);
    assert_eq!((s.limit, s.offset, s.slimit, s.soffset), (Some(0), Some(5), Some(2), Some(1)));
    assert_eq!(s.tz.as_deref(), Some("Europe/Paris"));
    assert!(!select("SELECT x FROM m ORDER BY time ASC").order_desc);
    assert!(!select("SELECT x FROM m ORDER BY time").order_desc);
    assert!(select("SELECT x FROM m ORDER BY DESC").order_desc);
    assert!(select(r#"SELECT x FROM m ORDER BY "time" desc"#).order_desc);
    assert_eq!(select("SELECT x FROM m LIMIT 18446744073709551615").limit, Some(u64::MAX));
}

// ---- SHOW ------------------------------------------------------------------------------------------------------

#[test]
fn show_measurements() {
    let Statement::ShowMeasurements { with, condition, limit, offset } = one("SHOW MEASUREMENTS") else { panic!() };
    assert!(with.is_none() && condition.is_none() && limit.is_none() && offset.is_none());

    let q = "SHOW MEASUREMENTS ON telegraf WITH MEASUREMENT =~ /^cpu.*/ WHERE host = 'a' LIMIT 10 OFFSET 5";
    let Statement::ShowMeasurements { with, condition, limit, offset } = one(q) else { panic!() };
    let with = with.unwrap();
    assert_eq!(name_match(&with), "=~ /^cpu.*/");
    assert!(with.matches("cpu1") && !with.matches("mem"));
    assert_eq!(sx(&condition.unwrap()), "(= host 'a')");
    assert_eq!((limit, offset), (Some(10), Some(5)));

    for (clause, expected) in
        [("= cpu", "= cpu"), (r#"!= "my cpu""#, "!= my cpu"), (r"!~ /a\/b/", "!~ /a/b/"), ("=~ /x/", "=~ /x/")]
    {
        let Statement::ShowMeasurements { with, .. } = one(&format!("show measurements with measurement {clause}"))
        else {
            panic!()
        };
        assert_eq!(name_match(&with.unwrap()), expected);
    }
    assert_err("SHOW MEASUREMENTS WITH MEASUREMENT =~ 'cpu'", "'cpu'", "expected a regular expression after =~");
    assert_err("SHOW MEASUREMENTS WITH MEASUREMENT IN (a)", "IN", "expected =, !=, =~ or !~, found \"IN\"");
    assert_err("SHOW MEASUREMENTS WITH KEY = a", "KEY", "expected MEASUREMENT, found \"KEY\"");
}

#[test]
fn show_tag_keys() {
    let Statement::ShowTagKeys { from, condition, limit, offset } = one("SHOW TAG KEYS") else { panic!() };
    assert!(from.is_empty() && condition.is_none() && limit.is_none() && offset.is_none());
    let q = r#"SHOW TAG KEYS ON "telegraf" FROM cpu, /^mem/ WHERE host = 'a' LIMIT 3 OFFSET 1"#;
    let Statement::ShowTagKeys { from, condition, limit, offset } = one(q) else { panic!() };
    assert_eq!(sources(&from), ["cpu", "/^mem/"]);
    assert_eq!(sx(&condition.unwrap()), "(= host 'a')");
    assert_eq!((limit, offset), (Some(3), Some(1)));
}

#[test]
fn show_tag_values() {
    let q = "SHOW TAG VALUES FROM cpu WITH KEY = host";
    let Statement::ShowTagValues { from, key, condition, limit, offset } = one(q) else { panic!() };
    assert_eq!((sources(&from), name_match(&key)), (vec!["cpu".to_string()], "= host".to_string()));
    assert!(condition.is_none() && limit.is_none() && offset.is_none());

    let q = r#"SHOW TAG VALUES ON db WITH KEY IN ("host", region) WHERE dc = 'a' LIMIT 5 OFFSET 10"#;
    let Statement::ShowTagValues { from, key, condition, limit, offset } = one(q) else { panic!() };
    assert!(from.is_empty());
    assert_eq!(name_match(&key), "IN host,region");
    assert!(key.matches("region") && !key.matches("dc"));
    assert_eq!(sx(&condition.unwrap()), "(= dc 'a')");
    assert_eq!((limit, offset), (Some(5), Some(10)));

    for (clause, expected) in
        [("!= host", "!= host"), ("=~ /^h/", "=~ /^h/"), ("!~ /^h/", "!~ /^h/"), (r#"= "a b""#, "= a b")]
    {
        let Statement::ShowTagValues { key, .. } = one(&format!("SHOW TAG VALUES WITH KEY {clause}")) else { panic!() };
        assert_eq!(name_match(&key), expected);
    }
    assert_err("SHOW TAG VALUES FROM cpu", "", "unexpected end of query, expected WITH");
    assert_err("SHOW TAG VALUES WITH KEY IN ()", ")", "expected a tag key, found \")\"");
    assert_err("SHOW TAG VALUES WITH KEY IN (a b)", "b)", "expected \",\" or \")\", found \"b\"");
    assert_err("SHOW TAG VALUES WITH KEY host", "host", "expected =, !=, =~, !~ or IN, found \"host\"");
    assert_err("SHOW TAG FOO", "FOO", "expected KEYS or VALUES after SHOW TAG");
}

#[test]
fn show_field_keys_series_databases_and_policies() {
    let Statement::ShowFieldKeys { from } = one("SHOW FIELD KEYS") else { panic!() };
    assert!(from.is_empty());
    let Statement::ShowFieldKeys { from } = one(r#"SHOW FIELD KEYS ON db FROM "db"."rp"."cpu""#) else { panic!() };
    assert_eq!(sources(&from), ["cpu"]);

    let Statement::ShowSeriesCardinality { from, condition } = one("SHOW SERIES CARDINALITY") else { panic!() };
    assert!(from.is_empty() && condition.is_none());
    let q = "SHOW SERIES CARDINALITY ON db FROM cpu WHERE host =~ /a/";
    let Statement::ShowSeriesCardinality { from, condition } = one(q) else { panic!() };
    assert_eq!((sources(&from), sx(&condition.unwrap())), (vec!["cpu".to_string()], "(=~ host /a/)".to_string()));

    let Statement::ShowSeries { from, condition, limit, offset } = one("SHOW SERIES") else { panic!() };
    assert!(from.is_empty() && condition.is_none() && limit.is_none() && offset.is_none());
    let q = "SHOW SERIES ON db FROM cpu, mem WHERE host = 'a' LIMIT 2 OFFSET 1";
    let Statement::ShowSeries { from, condition, limit, offset } = one(q) else { panic!() };
    assert_eq!(sources(&from), ["cpu", "mem"]);
    assert_eq!(sx(&condition.unwrap()), "(= host 'a')");
    assert_eq!((limit, offset), (Some(2), Some(1)));

    assert!(matches!(one("SHOW DATABASES"), Statement::ShowDatabases));
    assert!(matches!(one("show retention policies"), Statement::ShowRetentionPolicies));
    assert!(matches!(one(r#"SHOW RETENTION POLICIES ON "telegraf""#), Statement::ShowRetentionPolicies));

    assert_err("SHOW FIELDS", "FIELDS", "expected MEASUREMENTS, TAG KEYS, TAG VALUES, FIELD KEYS, SERIES, DATABASES");
    assert_err("SHOW", "", "unexpected end of query, expected MEASUREMENTS");
    assert_err("SHOW FIELD KEYS LIMIT 1", "LIMIT", "expected \";\" or end of query, found \"LIMIT\"");
    assert_err("SHOW RETENTION", "", "unexpected end of query, expected POLICIES");
    assert_err("SHOW DATABASES ON x", "ON", "expected \";\" or end of query");
}

// ---- expressions -----------------------------------------------------------------------------------------------

#[test]
fn precedence_and_associativity() {
    assert_eq!(field("SELECT a + b * c FROM m"), "(+ a (* b c))");
    assert_eq!(field("SELECT a * b + c FROM m"), "(+ (* a b) c)");
    assert_eq!(field("SELECT (a + b) * c FROM m"), "(* (+ a b) c)");
    assert_eq!(field("SELECT a - b - c FROM m"), "(- (- a b) c)");
    assert_eq!(field("SELECT a / b % c * d FROM m"), "(* (% (/ a b) c) d)");
    assert_eq!(field("SELECT -a * b FROM m"), "(* (neg a) b)");
    assert_eq!(cond("a = 1 OR b = 2 AND c = 3"), "(OR (= a 1) (AND (= b 2) (= c 3)))");
    assert_eq!(cond("a = 1 AND b = 2 OR c = 3"), "(OR (AND (= a 1) (= b 2)) (= c 3))");
    assert_eq!(cond("(a = 1 OR b = 2) AND c = 3"), "(AND (OR (= a 1) (= b 2)) (= c 3))");
    assert_eq!(cond("a + 1 > b * 2"), "(> (+ a 1) (* b 2))");
    assert_eq!(
        cond("a <> 'x' AND b <= 1 AND c >= 2 AND d < 3"),
        "(AND (AND (AND (!= a 'x') (<= b 1)) (>= c 2)) (< d 3))"
    );
    assert_eq!(cond("a = 1 OR b = 2 OR c = 3"), "(OR (OR (= a 1) (= b 2)) (= c 3))");
    assert_eq!(cond("x !~ /a|b/ OR y =~ /c/"), "(OR (!~ x /a|b/) (=~ y /c/))");
}

#[test]
fn negative_literals_and_negation() {
    let s = select("SELECT -5, -1.5, -1h, - 2, -x, -(5), 2 - -5, a -5, -now() FROM m");
    assert_eq!(
        fields(&s).into_iter().map(|f| f.0).collect::<Vec<_>>(),
        ["-5", "-1.5", "-3600000ms", "-2", "(neg x)", "(neg 5)", "(- 2 -5)", "(- a 5)", "(neg now())"]
    );
    assert!(matches!(s.fields[0].expr, Expr::Integer { value: -5, pos: 7 }));
    assert!(matches!(s.fields[1].expr, Expr::Number { value, pos: 11 } if value == -1.5));
    assert_eq!(duration(&s.fields[2].expr), (-3_600_000, -3_600_000_000_000, 17));
    assert!(matches!(&s.fields[4].expr, Expr::Neg { pos: 27, .. }));
    assert_eq!(field("SELECT - - - 3 FROM m"), "(neg (neg -3))");
    assert_eq!(field("SELECT -9223372036854775808 FROM m"), i64::MIN.to_string());
    assert_eq!(field("SELECT 9223372036854775807 FROM m"), i64::MAX.to_string());
    assert_err("SELECT 9223372036854775808 FROM m", "9223", "integer 9223372036854775808 is out of range");
    assert_err("SELECT -9223372036854775809 FROM m", "-", "is out of range");
    assert_err("SELECT 99999999999999999999 FROM m", "9999", "integer \"99999999999999999999\" is out of range");
}

#[test]
fn numbers() {
    let s = select("SELECT 1, 1.5, 1e3, 2.5E-1, .5, 0, 007 FROM m");
    assert_eq!(
        fields(&s).into_iter().map(|f| f.0).collect::<Vec<_>>(),
        ["1", "1.5", "1000.0", "0.25", "0.5", "0", "7"]
    );
    assert_err("SELECT 1e999 FROM m", "1e999", "out of range");
    assert_err("SELECT 1.5h FROM m", "1.5h", "invalid number \"1.5h\"");
}

#[test]
fn durations() {
    let cases: &[(&str, i64, i128)] = &[
        ("100ns", 0, 100),
        ("1u", 0, 1_000),
        ("1µ", 0, 1_000),
        ("1us", 0, 1_000),
        ("1500us", 1, 1_500_000),
        ("500ms", 500, 500_000_000),
        ("10s", 10_000, 10_000_000_000),
        ("1m", 60_000, 60_000_000_000),
        ("1h30m", 5_400_000, 5_400_000_000_000),
        ("1d", 86_400_000, 86_400_000_000_000),
        ("2w", 1_209_600_000, 1_209_600_000_000_000),
        ("1700000000000000000ns", 1_700_000_000_000, 1_700_000_000_000_000_000),
        ("1h1m1s1ms1us1ns", 3_661_001, 3_661_001_001_001),
    ];
    for &(text, ms, nanos) in cases {
        let s = select(&format!("SELECT x FROM m WHERE time > {text}"));
        let Some(Expr::Binary { rhs, .. }) = &s.condition else { panic!() };
        assert_eq!(duration(rhs), (ms, nanos, "SELECT x FROM m WHERE time > ".len()), "{text}");
    }
    // Sub-millisecond negative durations truncate toward zero; the exact value stays in nanos.
    let s = select("SELECT -1500us FROM m");
    assert_eq!(duration(&s.fields[0].expr), (-1, -1_500_000, 7));
    assert_err("SELECT x FROM m WHERE a = 10x", "10x", "invalid duration unit \"x\"");
    assert_err("SELECT x FROM m WHERE a = 10sec", "10sec", "invalid duration unit \"sec\"");
    assert_err("SELECT x FROM m WHERE a = 1h30", "1h30", "expected a duration unit after \"1h30\"");
    assert_err("SELECT x FROM m WHERE a = 99999999999999999999w", "9999", "out of range");
}

#[test]
fn strings_identifiers_and_casts() {
    assert_eq!(cond(r"a = 'it\'s' AND b = 'c:\\d' AND c = '\n' AND d = 'é'"), {
        "(AND (AND (AND (= a 'it's') (= b 'c:\\d')) (= c '\n')) (= d 'é'))"
    });
    assert_eq!(cond(r#""my tag" = 'x' AND "a\"b" = '' AND "sélect" = 'y'"#), {
        r#"(AND (AND (= my tag 'x') (= a"b '')) (= sélect 'y'))"#
    });
    let q = r#"SELECT usage::field, "host"::TAG FROM m WHERE region::tag = 'a'"#;
    let s = select(q);
    assert_eq!(fields(&s).into_iter().map(|f| f.0).collect::<Vec<_>>(), ["usage::field", "host::tag"]);
    assert_eq!(sx(s.condition.as_ref().unwrap()), "(= region::tag 'a')");
    assert!(
        matches!(s.fields[1].expr, Expr::Ident { kind: IdentKind::Tag, pos, .. } if pos == q.find("\"host").unwrap())
    );
    assert_err("SELECT x::integer FROM m", "integer", "expected tag or field after \"::\", found \"integer\"");
    assert_err("SELECT x FROM m WHERE a = 'bad\\q'", "\\q", "invalid escape \"\\q\" in string");
    // Reserved words need quotes; other keywords are fine as names.
    assert_eq!(cond(r#""from" = 'x' AND key = 'y' AND time > 0"#), "(AND (AND (= from 'x') (= key 'y')) (> time 0))");
}

#[test]
fn calls_regexes_and_literals() {
    assert_eq!(field("SELECT MEAN(x) FROM m"), "mean(x)");
    assert_eq!(field("SELECT count(*) FROM m"), "count(*)");
    assert_eq!(field("SELECT mean(/usage_.*/) FROM m"), "mean(/usage_.*/)");
    assert_eq!(field("SELECT f() FROM m"), "f()");
    assert_eq!(field("SELECT derivative(mean(x), 1s) FROM m"), "derivative(mean(x), 1000ms)");
    assert_eq!(field("SELECT f('a', /b/, 2, -3) FROM m"), "f('a', /b/, 2, -3)");
    assert_eq!(field("SELECT DISTINCT host FROM m"), "distinct(host)");
    assert_eq!(field("SELECT count(distinct \"host\") FROM m"), "count(distinct(host))");
    assert_eq!(field("SELECT distinct(x) FROM m"), "distinct(x)");
    assert_eq!(field("SELECT a / b / c FROM m"), "(/ (/ a b) c)");
    assert_eq!(cond("x = true"), "(= x true)");
    assert_eq!(cond("time > NOW() - 1h"), "(> time (- now() 3600000ms))");
    assert_err("SELECT now(1) FROM m", "1)", "now() takes no arguments");

    // InfluxQL escaping: `\/` is a slash, other backslashes reach the regex crate unchanged.
    for (text, pattern) in [(r"/a\/b/", "a/b"), (r"/\d+\.\d/", r"\d+\.\d"), (r"/a\\/", r"a\\"), ("//", "")] {
        let s = select(&format!("SELECT x FROM m WHERE h =~ {text}"));
        let Some(Expr::Binary { rhs, .. }) = &s.condition else { panic!() };
        assert_eq!(sx(rhs), format!("/{pattern}/"), "{text}");
    }
    let q = "SELECT x FROM m WHERE host =~ /web-(\\d+/";
    let e = err(q);
    assert_eq!(e.pos, q.find("/web").unwrap());
    assert!(e.message.starts_with("invalid regular expression \"/web-(\\d+/\": "), "{}", e.message);
    assert!(e.message.contains("unclosed group") && !e.message.contains('\n'), "{}", e.message);
    assert_err(
        "SELECT x FROM m WHERE host =~ 'web'",
        "'web'",
        "expected a regular expression after =~, found \"'web'\"",
    );
    assert_err("SELECT x FROM m WHERE host !~ web", "web", "expected a regular expression after !~, found \"web\"");
    assert_err("SELECT x FROM m WHERE host =~", "", "unexpected end of query, expected a regular expression after =~");
}

// ---- errors ----------------------------------------------------------------------------------------------------

#[test]
fn error_positions_and_messages() {
    let cases: &[(&str, &str, &str)] = &[
        // Missing FROM.
        ("SELECT x WHERE a = 1", "WHERE", "expected FROM, found \"WHERE\""),
        ("SELECT mean(x)", "", "unexpected end of query, expected FROM"),
        ("SELECT x y FROM m", "y", "expected FROM, found \"y\""),
        // Bad fill.
        (
            "SELECT mean(x) FROM m GROUP BY time(1m) fill(bogus)",
            "bogus",
            "expected null, none, previous, linear or a number in fill(), found \"bogus\"",
        ),
        ("SELECT x FROM m fill()", ")", "expected null, none, previous, linear or a number"),
        ("SELECT mean(x) FROM m GROUP BY time(1m) fill(-y)", "y)", "expected a number after \"-\" in fill()"),
        (
            "SELECT mean(x) FROM m GROUP BY time(1m) fill(1",
            "",
            "unexpected end of query, expected \")\" after the fill option",
        ),
        // Unterminated literals, at their opening character.
        ("SELECT x FROM m WHERE a = 'abc", "'abc", "unterminated string"),
        ("SELECT x FROM m WHERE a = 'abc\\'", "'abc", "unterminated string"),
        ("SELECT x FROM m WHERE a =~ /abc", "/abc", "unterminated regular expression"),
        ("SELECT x FROM m WHERE a =~ /abc\\/", "/abc", "unterminated regular expression"),
        ("SELECT x FROM \"m", "\"m", "unterminated quoted identifier"),
        // GROUP BY forms.
        ("SELECT mean(x) FROM m GROUP BY foo(x)", "foo", "unknown GROUP BY function \"foo\""),
        ("SELECT mean(x) FROM m GROUP BY 5", "5", "expected time(interval), a tag name or * in GROUP BY, found \"5\""),
        ("SELECT mean(x) FROM m GROUP BY 'host'", "'host'", "expected time(interval), a tag name or * in GROUP BY"),
        ("SELECT mean(x) FROM m GROUP BY", "", "unexpected end of query, expected time(interval), a tag name or *"),
        ("SELECT mean(x) FROM m GROUP BY time", "time", "GROUP BY time needs an interval"),
        ("SELECT mean(x) FROM m GROUP BY time(1m), time(5m)", "time(5m)", "GROUP BY time(...) is given twice"),
        ("SELECT mean(x) FROM m GROUP BY time(0s)", "0s", "must be positive"),
        ("SELECT mean(x) FROM m GROUP BY time(-1m)", "-1m", "must be positive"),
        ("SELECT mean(x) FROM m GROUP BY time(10)", "10", "expected a GROUP BY time interval, like 1m, found \"10\""),
        ("SELECT mean(x) FROM m GROUP BY time(1500us)", "1500us", "whole number of milliseconds"),
        ("SELECT mean(x) FROM m GROUP BY time(1m, 1)", "1)", "expected a GROUP BY time offset"),
        ("SELECT mean(x) FROM m GROUP BY time(1m 1s)", "1s", "expected \")\", found \"1s\""),
        ("SELECT mean(x) FROM m GROUP BY host::field", "field", "expected tag after \"::\" in GROUP BY"),
        ("SELECT mean(x) FROM m GROUP host", "host", "expected BY, found \"host\""),
        // Trailing garbage and clauses out of order.
        ("SELECT x FROM m extra", "extra", "expected \";\" or end of query, found \"extra\""),
        ("SELECT x FROM m LIMIT 1 WHERE a = 1", "WHERE", "expected \";\" or end of query, found \"WHERE\""),
        ("SELECT x FROM m; SELECT", "", "unexpected end of query, expected an expression"),
        ("SELECT x FROM m; DROP m", "DROP", "expected SELECT or SHOW, found \"DROP\""),
        // Limits.
        ("SELECT x FROM m LIMIT -1", "-1", "LIMIT expects a non-negative integer, found \"-\""),
        ("SELECT x FROM m LIMIT 1.5", "1.5", "LIMIT expects a non-negative integer, found \"1.5\""),
        ("SELECT x FROM m LIMIT", "", "unexpected end of query, LIMIT expects a non-negative integer"),
        ("SELECT x FROM m OFFSET y", "y", "OFFSET expects a non-negative integer"),
        ("SELECT x FROM m SLIMIT 1s", "1s", "SLIMIT expects a non-negative integer"),
        ("SELECT x FROM m SOFFSET 'a'", "'a'", "SOFFSET expects a non-negative integer"),
        // ORDER BY.
        ("SELECT x FROM m ORDER BY host", "host", "only ORDER BY time is supported"),
        ("SELECT x FROM m ORDER BY", "", "unexpected end of query, expected time"),
        ("SELECT x FROM m ORDER time", "time", "expected BY, found \"time\""),
        // tz.
        ("SELECT x FROM m tz(Europe)", "Europe", "expected a time zone string"),
        // Expressions.
        ("SELECT FROM m", "FROM", "expected an expression, found \"FROM\""),
        ("SELECT x FROM m WHERE", "", "unexpected end of query, expected an expression"),
        ("SELECT x FROM m WHERE a = 1 AND", "", "unexpected end of query, expected an expression"),
        ("SELECT x FROM m WHERE a = 1 AND OR b = 2", "OR", "expected an expression, found \"OR\""),
        ("SELECT x FROM m WHERE (a = 1", "", "unexpected end of query, expected \")\""),
        ("SELECT mean(x FROM m", "FROM", "expected \",\" or \")\", found \"FROM\""),
        ("SELECT x FROM m WHERE a == 1", "= 1", "expected an expression, found \"=\""),
        ("SELECT x FROM m WHERE a @ 1", "@", "unexpected character \"@\""),
        ("SELECT x FROM m WHERE a ! 1", "!", "unexpected character \"!\""),
        ("SELECT a.b FROM m", ".b", "expected FROM, found \".\""),
        ("SELECT x FROM m WHERE a = :", ":", "unexpected character \":\""),
        ("SELECT \"a\"(x) FROM m", "(x", "expected FROM, found \"(\""),
        ("SELECT / FROM m", "/", "unterminated regular expression"),
    ];
    for &(q, at, message) in cases {
        assert_err(q, at, message);
    }
}

#[test]
fn positions_are_byte_offsets_on_char_boundaries() {
    // "é" and "ü" take two bytes each; the error positions count bytes.
    assert_err("SELECT é FROM m", "é", "unexpected character \"é\"");
    let q = "SELECT x FROM m WHERE host = 'é' AND ü = 1";
    assert_err(q, "ü", "unexpected character \"ü\"");
    assert_eq!(q.find('ü'), Some(38));
    let q = "SELECT \"é\" FROM \"ü\" WHERE \"ö\" = 'x' extra";
    assert_err(q, "extra", "found \"extra\"");
    let s = select("SELECT \"é\" FROM \"ü\" WHERE \"ö\" = 1µs");
    assert_eq!(s.fields[0].expr.pos(), 7);
    let Some(Expr::Binary { lhs, rhs, .. }) = &s.condition else { panic!() };
    assert_eq!(
        (lhs.pos(), rhs.pos()),
        ("SELECT \"é\" FROM \"ü\" WHERE ".len(), "SELECT \"é\" FROM \"ü\" WHERE \"ö\" = ".len())
    );
    assert_eq!(duration(rhs).1, 1_000);
    // Long tokens are shortened in messages.
    let long = format!("SELECT x FROM m {}", "y".repeat(200));
    let e = err(&long);
    assert!(e.message.len() < 100 && e.message.ends_with("...\""), "{}", e.message);
}

#[test]
fn nesting_and_size_are_bounded_without_overflowing_the_stack() {
    // Legitimate depth and width parse.
    let nested = format!("SELECT {}x{} FROM m", "(".repeat(60), ")".repeat(60));
    assert_eq!(field(&nested), "x");
    let calls = format!("SELECT {}x{} FROM m", "f(".repeat(60), ")".repeat(60));
    assert!(field(&calls).starts_with("f(f(f("));
    let hosts = (0..900).map(|i| format!("host = 'h{i}'")).collect::<Vec<_>>().join(" OR ");
    let s = select(&format!("SELECT x FROM m WHERE {hosts}"));
    assert!(matches!(s.condition, Some(Expr::Binary { op: BinOp::Or, .. })));

    // Beyond the bounds: errors, not stack overflows.
    let q = format!("SELECT {}x{} FROM m", "(".repeat(100_000), ")".repeat(100_000));
    assert!(err(&q).message.contains("nested too deeply"));
    let q = format!("SELECT {}x FROM m", "f(".repeat(100_000));
    assert!(err(&q).message.contains("nested too deeply"));
    let q = format!("SELECT {}x FROM m", "- ".repeat(100_000));
    assert!(err(&q).message.contains("too complex"));
    let q = format!("SELECT {}1 FROM m", "1 + ".repeat(100_000));
    assert!(err(&q).message.contains("too complex"));
    let q = format!("SELECT x FROM m WHERE {}", vec!["a = 1"; 100_000].join(" AND "));
    assert!(err(&q).message.contains("too complex"));
}

// ---- never panic -----------------------------------------------------------------------------------------------

/// Checks that every position in a parse result or error lies on a char boundary of the text.
fn check_no_panic(text: &str) {
    match parse(text) {
        Ok(statements) => {
            assert!(!statements.is_empty());
            for st in &statements {
                if let Statement::Select(s) = st {
                    let exprs = s.fields.iter().map(|f| &f.expr).chain(s.condition.as_ref()).chain(s.having.as_ref());
                    for e in exprs {
                        assert!(e.pos() < text.len() && text.is_char_boundary(e.pos()), "{text:?}: {e:?}");
                    }
                }
            }
        }
        Err(e) => {
            assert!(e.pos <= text.len() && text.is_char_boundary(e.pos), "{text:?}: {e:?}");
            assert!(!e.message.is_empty());
        }
    }
}

const TOKENS: &[&str] = &[
    "SELECT",
    "select",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "time(",
    "time",
    "fill(",
    "null",
    "none",
    "previous",
    "linear",
    "HAVING",
    "ORDER",
    "ASC",
    "DESC",
    "LIMIT",
    "OFFSET",
    "SLIMIT",
    "SOFFSET",
    "tz(",
    "'Europe/Paris'",
    "SHOW",
    "MEASUREMENTS",
    "MEASUREMENT",
    "TAG",
    "KEYS",
    "KEY",
    "VALUES",
    "FIELD",
    "SERIES",
    "CARDINALITY",
    "DATABASES",
    "RETENTION",
    "POLICIES",
    "ON",
    "WITH",
    "IN",
    "AND",
    "OR",
    "AS",
    "*",
    "(",
    ")",
    ",",
    ";",
    ".",
    "..",
    "::",
    "::tag",
    "::field",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "=~",
    "!~",
    "+",
    "-",
    "/",
    "%",
    "mean(",
    "now()",
    "cpu",
    "host",
    "\"db\"",
    "\"q\\\"x\"",
    "'a'",
    "'it\\'s'",
    "'",
    "\"",
    "/web-\\d+/",
    "/a\\/b/",
    "/(/",
    "/",
    "1",
    "0",
    "-1",
    "1.5",
    ".5",
    "1e3",
    "1e",
    "10m",
    "1h30m",
    "1µs",
    "µ",
    "é",
    "5x",
    "99999999999999999999",
    "-- c\n",
    "--",
    "\n",
    "true",
    "distinct",
    "@",
    "!",
    ":",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_text(text in prop::string::string_regex(".{0,80}").unwrap()) {
        check_no_panic(&text);
    }

    #[test]
    fn never_panics_on_query_like_tokens(
        parts in prop::collection::vec((prop::sample::select(TOKENS), prop::sample::select(&[" ", "", "\t"][..])), 0..40)
    ) {
        let text: String = parts.iter().flat_map(|(token, sep)| [*token, *sep]).collect();
        check_no_panic(&text);
    }

    #[test]
    fn never_panics_on_mangled_valid_queries(cut in 0usize..200, insert in prop::sample::select(TOKENS)) {
        let q = "SELECT mean(usage_user) + 1 AS u FROM \"db\".\"rp\".cpu WHERE host =~ /web-\\d+/ AND time > now() - 1h \
                 GROUP BY time(5m, -1m), * fill(previous) HAVING mean(usage_user) > 0 ORDER BY time DESC LIMIT 10 tz('UTC')";
        let mut at = cut.min(q.len());
        while !q.is_char_boundary(at) {
            at -= 1;
        }
        check_no_panic(&q[..at]);
        check_no_panic(&format!("{}{insert}{}", &q[..at], &q[at..]));
    }
}
