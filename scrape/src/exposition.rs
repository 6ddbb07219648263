//! Parsing of the Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text into [`Sample`]s.
//!
//! Both parsers work on bytes, a line at a time, without regular expressions or per-line allocations beyond
//! the sample's own strings, and follow Prometheus's `textparse` package:
//!
//! * **Text format** ([`Format::Text`], `text/plain; version=0.0.4`): blank lines and `#` comments are skipped;
//!   `# HELP name text` and `# TYPE name counter|gauge|histogram|summary|untyped` are metadata. Spaces and tabs
//!   between tokens are free, the comma between labels is optional and a trailing one is allowed. A sample is
//!   `name{label="value",...} value [timestamp]`, the timestamp in integer milliseconds. The last line need
//!   not end with a newline.
//! * **OpenMetrics** ([`Format::OpenMetrics`], `application/openmetrics-text`): every line ends with `\n`, tokens
//!   are separated by exactly one space, blank lines and other comments are errors, `# UNIT` is allowed (and
//!   must be a suffix of the metric name), types add `gaugehistogram`, `info`, `stateset` and `unknown`,
//!   timestamps are seconds as a float (kept as whole milliseconds, truncated as Prometheus does), an exemplar
//!   (`# {trace_id="..."} 1.0 [ts]`) may follow a sample and is checked then ignored, and the body must end
//!   with `# EOF` with nothing after it. `_created` series of counters, histograms and summaries are dropped.
//!
//! In both, label values unescape `\\`, `\"` and `\n` (any other backslash pair is kept as written), values
//! are Go floats (`NaN`, `+Inf`, `-Inf`, `1e3`; no hex, no `_`), label values must be UTF-8, a label name may
//! not repeat, and labels with empty values are dropped (an empty label is no label in Prometheus). Every
//! error names the 1-based line and what was expected.
//!
//! As in Prometheus 3, the `le` label of histogram buckets and the `quantile` label of summaries (by the last
//! `# TYPE` line) are normalized to OpenMetrics float text, so both formats give the same series: `le="1"`
//! becomes `le="1.0"`, `le="1000000"` becomes `le="1e+06"`, `quantile="0.99"` stays.
//!
//! The `# TYPE` of each family is kept in [`Exposition::types`], so [`Exposition::family`] can tell that
//! `http_request_duration_seconds_bucket` belongs to the histogram `http_request_duration_seconds`.

use std::collections::HashMap;
use std::fmt;

/// One sample: metric name, labels (sorted by name, without `__name__`), value and optional explicit timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the Unix epoch, when the exposition gave one.
    pub timestamp_ms: Option<i64>,
}

/// Which text format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (`text/plain`).
    Text,
    /// OpenMetrics 1.0 text (`application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header names: OpenMetrics for `application/openmetrics-text`, the text
    /// format for anything else (including `text/plain` and a missing header), as Prometheus 2 does.
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// The type of a metric family, from `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    /// OpenMetrics only.
    GaugeHistogram,
    Summary,
    /// OpenMetrics only.
    Info,
    /// OpenMetrics only.
    StateSet,
    /// `untyped` in the text format, `unknown` in OpenMetrics.
    Unknown,
}

impl MetricType {
    /// The suffixes the samples of a family of this type may add to the family name.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Histogram => &["_bucket", "_sum", "_count", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            MetricType::Summary => &["_sum", "_count", "_created"],
            MetricType::Info => &["_info"],
            _ => &[],
        }
    }

    /// Whether OpenMetrics gives families of this type a `_created` series.
    fn has_created(self) -> bool {
        matches!(self, MetricType::Counter | MetricType::Histogram | MetricType::Summary)
    }
}

/// The result of parsing one body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Samples in exposition order.
    pub samples: Vec<Sample>,
    /// The `# TYPE` of each family, by family name.
    pub types: HashMap<String, MetricType>,
}

impl Exposition {
    /// The family a sample name belongs to and its type: `foo_bucket` belongs to the histogram `foo`,
    /// `foo_total` to the counter `foo`; a name with its own `# TYPE` belongs to itself. `None` for untyped
    /// samples.
    pub fn family<'a>(&'a self, sample_name: &'a str) -> Option<(&'a str, MetricType)> {
        if let Some(t) = self.types.get(sample_name) {
            return Some((sample_name, *t));
        }
        let cut = sample_name.rfind('_')?;
        let (family, suffix) = sample_name.split_at(cut);
        let t = *self.types.get(family)?;
        t.suffixes().contains(&suffix).then_some((family, t))
    }
}

/// Why a body did not parse: the 1-based line and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses a body in the given format.
pub fn parse(body: &[u8], format: Format) -> Result<Exposition, ParseError> {
    let mut p = Parser { line: 0, out: Exposition::default(), family: None };
    match format {
        Format::Text => p.text_body(body)?,
        Format::OpenMetrics => p.om_body(body)?,
    }
    Ok(p.out)
}

struct Parser {
    line: usize,
    out: Exposition,
    /// The family of the last `# TYPE` line and its type.
    family: Option<(String, MetricType)>,
}

type Res<T> = Result<T, ParseError>;

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

fn is_label_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn skip_ws(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && is_ws(line[i]) {
        i += 1;
    }
    i
}

/// The end of the run of bytes from `i` that satisfy `ok`.
fn span(line: &[u8], mut i: usize, ok: impl Fn(u8) -> bool) -> usize {
    while i < line.len() && ok(line[i]) {
        i += 1;
    }
    i
}

/// What is at `i`, for messages: a short quoted excerpt, or "end of line".
fn at(line: &[u8], i: usize) -> String {
    if i >= line.len() {
        return "end of line".to_string();
    }
    let end = (i + 24).min(line.len());
    let mut s = format!("{:?}", String::from_utf8_lossy(&line[i..end]));
    if end < line.len() {
        s.insert_str(s.len() - 1, "...");
    }
    s
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Go's `strconv.ParseFloat` as Prometheus uses it: no hex floats, no `_`, no signed NaN.
fn parse_float(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.bytes().any(|c| matches!(c, b'p' | b'P' | b'_' | b'x' | b'X')) {
        return None;
    }
    if (s.starts_with('+') || s.starts_with('-')) && s[1..].eq_ignore_ascii_case("nan") {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    Some(if v.is_nan() { f64::NAN } else { v })
}

/// Unescapes a label value: `\\`, `\"` and `\n`; other pairs stay as written.
fn unescape(raw: &[u8], line: usize) -> Res<String> {
    let s = std::str::from_utf8(raw).map_err(|_| ParseError {
        line,
        message: format!("label value {:?} is not valid UTF-8", String::from_utf8_lossy(raw)),
    })?;
    if !s.contains('\\') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Ok(out)
}

/// The end of a quoted string starting at `start` (which is `"`): the index just past the closing quote,
/// skipping backslash pairs. None when the line ends first.
fn quoted_end(line: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Sorts labels, rejects repeated names (`__name__` repeats the metric name) and drops empty values.
fn finish_labels(labels: &mut Vec<(String, String)>, line: usize) -> Res<()> {
    labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ParseError { line, message: format!("label name {:?} is not unique", w[0].0) });
    }
    if labels.iter().any(|(n, _)| n == crate::labels::METRIC_NAME) {
        return Err(ParseError { line, message: format!("label name {:?} is not unique", crate::labels::METRIC_NAME) });
    }
    labels.retain(|(_, v)| !v.is_empty());
    Ok(())
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`: the shortest round-trip digits, in exponent form (`1e+06`,
/// `1.5e-05`) when the decimal exponent is below -4 or at least 6, else in plain form.
fn go_format_g(f: f64) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let mut out = String::with_capacity(mantissa.len() + 5);
    out.push_str(mantissa);
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    if exp.abs() < 10 {
        out.push('0');
    }
    out.push_str(&exp.abs().to_string());
    out
}

/// Prometheus's `FormatOpenMetricsFloat`: Go's formatting, with `.0` added to integers.
fn format_openmetrics_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let mut s = go_format_g(f);
    if !s.contains(['.', 'e']) {
        s.push_str(".0");
    }
    s
}

/// Normalizes `le` of histograms and `quantile` of summaries (Prometheus 3's `normalizeFloatsInLabelValues`).
fn normalize_bounds(labels: &mut [(String, String)], family_type: Option<MetricType>) {
    let name = match family_type {
        Some(MetricType::Histogram) => "le",
        Some(MetricType::Summary) => "quantile",
        _ => return,
    };
    for (k, v) in labels.iter_mut() {
        if k == name {
            if let Some(f) = parse_float(v.as_bytes()) {
                *v = format_openmetrics_float(f);
            }
        }
    }
}

impl Parser {
    fn err<T>(&self, message: impl Into<String>) -> Res<T> {
        Err(ParseError { line: self.line, message: message.into() })
    }

    fn record_type(&mut self, name: &str, t: MetricType) {
        self.out.types.insert(name.to_string(), t);
        self.family = Some((name.to_string(), t));
    }

    // ---- Prometheus text format ----

    fn text_body(&mut self, body: &[u8]) -> Res<()> {
        let mut pos = 0;
        while pos < body.len() {
            self.line += 1;
            let end = body[pos..].iter().position(|&c| c == b'\n').map_or(body.len(), |n| pos + n);
            self.text_line(&body[pos..end])?;
            pos = end + 1;
        }
        Ok(())
    }

    fn text_line(&mut self, line: &[u8]) -> Res<()> {
        let i = skip_ws(line, 0);
        if i == line.len() {
            return Ok(());
        }
        if line[i] == b'#' {
            return self.text_comment(&line[i + 1..]);
        }
        self.text_sample(line, i)
    }

    /// `rest` follows the `#`. Only `# HELP ` and `# TYPE ` (with at least one space or tab around the
    /// keyword) are metadata; anything else is a comment.
    fn text_comment(&mut self, rest: &[u8]) -> Res<()> {
        if rest.is_empty() || !is_ws(rest[0]) {
            return Ok(());
        }
        let j = skip_ws(rest, 0);
        let is_type = rest[j..].starts_with(b"TYPE");
        if !is_type && !rest[j..].starts_with(b"HELP") {
            return Ok(());
        }
        let k = j + 4;
        if k >= rest.len() || !is_ws(rest[k]) {
            return Ok(());
        }
        let keyword = if is_type { "TYPE" } else { "HELP" };
        let k = skip_ws(rest, k);
        if k >= rest.len() || !is_name_start(rest[k]) {
            return self.err(format!("expected metric name after # {keyword}, got {}", at(rest, k)));
        }
        let name_end = span(rest, k, is_name_char);
        let name = ascii(&rest[k..name_end]);
        // As Prometheus's lexer: the text is the rest of the line less its first character (the separator).
        let text = if name_end < rest.len() { &rest[name_end + 1..] } else { &rest[name_end..] };
        let Ok(text) = std::str::from_utf8(text) else {
            return self.err(format!("# {keyword} text for {name:?} is not valid UTF-8"));
        };
        if is_type {
            let t = match text {
                "counter" => MetricType::Counter,
                "gauge" => MetricType::Gauge,
                "histogram" => MetricType::Histogram,
                "summary" => MetricType::Summary,
                "untyped" => MetricType::Unknown,
                _ => {
                    return self.err(format!(
                        "invalid metric type {text:?} for {name:?} \
                         (expected counter, gauge, histogram, summary or untyped)"
                    ))
                }
            };
            self.record_type(&name, t);
        }
        // HELP text is only checked (UTF-8); nothing downstream needs it.
        Ok(())
    }

    fn text_sample(&mut self, line: &[u8], start: usize) -> Res<()> {
        if !is_name_start(line[start]) {
            return self.err(format!("expected a metric name, HELP, TYPE or comment, got {}", at(line, start)));
        }
        let name_end = span(line, start, is_name_char);
        let name = ascii(&line[start..name_end]);
        let mut i = skip_ws(line, name_end);
        let mut labels = Vec::new();
        if i < line.len() && line[i] == b'{' {
            i = self.text_labels(line, i + 1, &mut labels)?;
            i = skip_ws(line, i);
        }
        let v_end = span(line, i, |c| !is_ws(c) && c != b'{');
        if v_end == i {
            return self.err(format!("expected value after metric {name:?}, got {}", at(line, i)));
        }
        let Some(value) = parse_float(&line[i..v_end]) else {
            return self.err(format!("invalid value {} for metric {name:?}", at(&line[..v_end], i)));
        };
        i = skip_ws(line, v_end);
        let mut timestamp_ms = None;
        if i < line.len() {
            let t_end = span(line, i, |c| c.is_ascii_digit());
            if t_end == i {
                return self.err(format!("expected timestamp or end of line after value, got {}", at(line, i)));
            }
            // Digits only, so the only failure is overflow.
            let Ok(ts) = std::str::from_utf8(&line[i..t_end]).unwrap_or("").parse::<i64>() else {
                return self.err(format!("timestamp {} out of range", at(&line[..t_end], i)));
            };
            timestamp_ms = Some(ts);
            i = skip_ws(line, t_end);
            if i < line.len() {
                return self.err(format!("expected end of line after timestamp, got {}", at(line, i)));
            }
        }
        finish_labels(&mut labels, self.line)?;
        normalize_bounds(&mut labels, self.family.as_ref().map(|f| f.1));
        self.out.samples.push(Sample { name, labels, value, timestamp_ms });
        Ok(())
    }

    /// Labels after `{` at `i`; returns the index after `}`.
    fn text_labels(&mut self, line: &[u8], mut i: usize, labels: &mut Vec<(String, String)>) -> Res<usize> {
        loop {
            i = skip_ws(line, i);
            if i >= line.len() {
                return self.err("unexpected end of line inside braces (missing '}')");
            }
            if line[i] == b'}' {
                return Ok(i + 1);
            }
            if !is_label_start(line[i]) {
                return self.err(format!("expected label name or '}}', got {}", at(line, i)));
            }
            let n_end = span(line, i, is_label_char);
            let lname = ascii(&line[i..n_end]);
            i = skip_ws(line, n_end);
            if i >= line.len() || line[i] != b'=' {
                return self.err(format!("expected '=' after label name {lname:?}, got {}", at(line, i)));
            }
            i = skip_ws(line, i + 1);
            if i >= line.len() || line[i] != b'"' {
                return self.err(format!("expected quoted label value for {lname:?}, got {}", at(line, i)));
            }
            let Some(q_end) = quoted_end(line, i) else {
                return self.err(format!("unterminated label value for {lname:?} (missing closing '\"')"));
            };
            let value = unescape(&line[i + 1..q_end - 1], self.line)?;
            labels.push((lname, value));
            i = skip_ws(line, q_end);
            // The comma is optional in the text format, and a trailing one is allowed.
            if i < line.len() && line[i] == b',' {
                i += 1;
            }
        }
    }

    // ---- OpenMetrics ----

    fn om_body(&mut self, body: &[u8]) -> Res<()> {
        let mut pos = 0;
        loop {
            self.line += 1;
            if pos >= body.len() {
                return self.err("data does not end with # EOF");
            }
            let nl = body[pos..].iter().position(|&c| c == b'\n').map(|n| pos + n);
            let end = nl.unwrap_or(body.len());
            let line = &body[pos..end];
            if line == b"# EOF" {
                let after = nl.map_or(body.len(), |n| n + 1);
                if after < body.len() {
                    self.line += 1;
                    return self.err("unexpected data after # EOF");
                }
                return Ok(());
            }
            if line.starts_with(b"# EOF") {
                return self.err("unexpected data after # EOF");
            }
            if nl.is_none() {
                return self.err("data does not end with # EOF (last line has no newline)");
            }
            self.om_line(line)?;
            pos = end + 1;
        }
    }

    fn om_line(&mut self, line: &[u8]) -> Res<()> {
        if line.is_empty() {
            return self.err("unexpected blank line (OpenMetrics allows none)");
        }
        if line[0] == b'#' {
            return self.om_meta(line);
        }
        self.om_sample(line)
    }

    fn om_meta(&mut self, line: &[u8]) -> Res<()> {
        let kw = if line.len() >= 7 && line[1] == b' ' && line[6] == b' ' { &line[2..6] } else { b"".as_slice() };
        let keyword = match kw {
            b"HELP" => "HELP",
            b"TYPE" => "TYPE",
            b"UNIT" => "UNIT",
            _ => {
                return self.err(format!(
                    "invalid comment {}: OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF",
                    at(line, 0)
                ))
            }
        };
        let k = 7;
        if k >= line.len() || !is_name_start(line[k]) {
            return self.err(format!("expected metric name after # {keyword}, got {}", at(line, k)));
        }
        let name_end = span(line, k, is_name_char);
        let name = ascii(&line[k..name_end]);
        if name_end >= line.len() || line[name_end] != b' ' {
            return self.err(format!("expected a space and text after # {keyword} {name}, got {}", at(line, name_end)));
        }
        let text = &line[name_end + 1..];
        let Ok(text) = std::str::from_utf8(text) else {
            return self.err(format!("# {keyword} text for {name:?} is not valid UTF-8"));
        };
        match keyword {
            "TYPE" => {
                let t = match text {
                    "counter" => MetricType::Counter,
                    "gauge" => MetricType::Gauge,
                    "histogram" => MetricType::Histogram,
                    "gaugehistogram" => MetricType::GaugeHistogram,
                    "summary" => MetricType::Summary,
                    "info" => MetricType::Info,
                    "stateset" => MetricType::StateSet,
                    "unknown" => MetricType::Unknown,
                    _ => {
                        return self.err(format!(
                            "invalid metric type {text:?} for {name:?} (expected counter, gauge, histogram, \
                             gaugehistogram, summary, info, stateset or unknown)"
                        ))
                    }
                };
                self.record_type(&name, t);
            }
            "UNIT" if !text.is_empty() && !name.strip_suffix(text).is_some_and(|f| f.len() > 1 && f.ends_with('_')) => {
                return self.err(format!("unit {text:?} is not a suffix of metric {name:?}"));
            }
            _ => {} // HELP: only checked (UTF-8).
        }
        Ok(())
    }

    fn om_sample(&mut self, line: &[u8]) -> Res<()> {
        if !is_name_start(line[0]) {
            return self.err(format!("expected a metric name or # HELP/TYPE/UNIT/EOF, got {}", at(line, 0)));
        }
        let name_end = span(line, 0, is_name_char);
        let name = ascii(&line[..name_end]);
        let mut i = name_end;
        let mut labels = Vec::new();
        if i < line.len() && line[i] == b'{' {
            i = self.om_labels(line, i + 1, &mut labels, "label")?;
        }
        let value = self.om_value(line, i, &name)?;
        i = value.1;
        let value = value.0;
        let mut timestamp_ms = None;
        if i < line.len() && !line[i..].starts_with(b" # {") {
            // ` <timestamp>`
            let t_start = i + 1;
            let t_end = span(line, t_start, |c| c != b' ');
            if line[i] != b' ' || t_end == t_start {
                return self
                    .err(format!("expected a space and timestamp or exemplar after value, got {}", at(line, i)));
            }
            let Some(ts) = parse_float(&line[t_start..t_end]) else {
                return self.err(format!("invalid timestamp {}", at(&line[..t_end], t_start)));
            };
            if !ts.is_finite() {
                return self.err(format!("invalid timestamp {ts}"));
            }
            timestamp_ms = Some((ts * 1000.0) as i64);
            i = t_end;
        }
        if i < line.len() {
            if !line[i..].starts_with(b" # {") {
                return self.err(format!("expected exemplar or end of line after timestamp, got {}", at(line, i)));
            }
            self.om_exemplar(line, i + 4)?;
        }
        finish_labels(&mut labels, self.line)?;
        normalize_bounds(&mut labels, self.family.as_ref().map(|f| f.1));
        if let Some(family) = name.strip_suffix("_created") {
            if matches!(&self.family, Some((f, t)) if f == family && t.has_created()) {
                return Ok(());
            }
        }
        self.out.samples.push(Sample { name, labels, value, timestamp_ms });
        Ok(())
    }

    /// ` <value>` at `i`; returns the value and the index after it.
    fn om_value(&self, line: &[u8], i: usize, what: &str) -> Res<(f64, usize)> {
        if i >= line.len() || line[i] != b' ' {
            return self.err(format!("expected a space and value after {what:?}, got {}", at(line, i)));
        }
        let v_end = span(line, i + 1, |c| c != b' ');
        if v_end == i + 1 {
            return self.err(format!("expected value after {what:?}, got {}", at(line, i + 1)));
        }
        match parse_float(&line[i + 1..v_end]) {
            Some(v) => Ok((v, v_end)),
            None => self.err(format!("invalid value {} for {what:?}", at(&line[..v_end], i + 1))),
        }
    }

    /// Labels after `{` at `i`, strictly (no spaces); returns the index after `}`.
    fn om_labels(&self, line: &[u8], mut i: usize, labels: &mut Vec<(String, String)>, what: &str) -> Res<usize> {
        loop {
            if i >= line.len() {
                return self.err("unexpected end of line inside braces (missing '}')");
            }
            if line[i] == b'}' {
                return Ok(i + 1);
            }
            if !is_label_start(line[i]) {
                return self.err(format!("expected {what} name or '}}', got {}", at(line, i)));
            }
            let n_end = span(line, i, is_label_char);
            let lname = ascii(&line[i..n_end]);
            if n_end >= line.len() || line[n_end] != b'=' {
                return self.err(format!("expected '=' after {what} name {lname:?}, got {}", at(line, n_end)));
            }
            i = n_end + 1;
            if i >= line.len() || line[i] != b'"' {
                return self.err(format!("expected quoted value for {what} {lname:?}, got {}", at(line, i)));
            }
            let Some(q_end) = quoted_end(line, i) else {
                return self.err(format!("unterminated value for {what} {lname:?} (missing closing '\"')"));
            };
            let value = unescape(&line[i + 1..q_end - 1], self.line)?;
            labels.push((lname, value));
            i = q_end;
            match line.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {}
                _ => return self.err(format!("expected ',' or '}}' after {what} value, got {}", at(line, i))),
            }
        }
    }

    /// An exemplar after ` # {` (index `i` is just past the brace): checked, then dropped.
    fn om_exemplar(&self, line: &[u8], i: usize) -> Res<()> {
        let mut labels = Vec::new();
        let i = self.om_labels(line, i, &mut labels, "exemplar label")?;
        let (_, mut i) = self.om_value(line, i, "exemplar labels")?;
        if i < line.len() {
            let t_end = span(line, i + 1, |c| c != b' ');
            if line[i] != b' ' || t_end == i + 1 {
                return self.err(format!("expected exemplar timestamp or end of line, got {}", at(line, i)));
            }
            match parse_float(&line[i + 1..t_end]) {
                Some(ts) if ts.is_finite() => {}
                _ => return self.err(format!("invalid exemplar timestamp {}", at(&line[..t_end], i + 1))),
            }
            i = t_end;
            if i < line.len() {
                return self.err(format!("expected end of line after exemplar timestamp, got {}", at(line, i)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "exposition_test.rs"]
mod tests;
