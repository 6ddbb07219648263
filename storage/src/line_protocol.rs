//! InfluxDB line protocol: parser (hot ingest path, untrusted input) and writer.
//!
//! # Grammar
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
//! ```
//! One point per line (`\n`; a `\r` before it is ignored). Blank lines and lines whose first non-blank byte is
//! `#` are skipped. Sections are separated by one or more spaces; spaces and tabs at either end of a line are
//! ignored.
//!
//! # Escaping (as InfluxDB documents it)
//! - measurement: `\,` and `\ ` stand for a comma and a space;
//! - tag keys, tag values, field keys: `\,`, `\=` and `\ `.
//!
//! A backslash before any other byte is an ordinary character, so `C:\dir` is read as written and `a\\,b`
//! is `a\,b` (the last backslash escapes the comma, the first is literal). It follows that a name cannot end
//! with a backslash. Names are UTF-8 without ASCII control characters (line protocol does not allow them;
//! refusing them also keeps every stored name printable on one line).
//!
//! # Field values
//! All become `f64`:
//! - float: `1`, `-1.5`, `.5`, `1e10`, `-1.5E-3`. `NaN`, `inf` and friends are not line protocol and are
//!   refused; so is a leading `+` (as InfluxDB does). A float too large for `f64` is out of range.
//! - integer `12i`, `-12i` (`i64` range), unsigned `12u` (`u64` range): exact when within ±2^53, else
//!   rounded to the nearest `f64`.
//! - boolean: `t T true True TRUE` → 1.0, `f F false False FALSE` → 0.0.
//! - string `"..."` (`\"` and `\\` escape inside): read correctly, so commas, spaces and equals signs inside
//!   do not confuse the rest of the line, then refused with [`ErrorKind::StringField`]: Pharos stores numbers
//!   only. A syntax error anywhere on the line takes precedence over that refusal.
//!
//! # Decisions
//! - Tags are sorted by key; a duplicate tag key is an error ([`ErrorKind::DuplicateTag`]).
//! - A duplicate field key in one line: **the last value wins** (as in InfluxDB, where a later write of the
//!   same field overwrites); the field keeps the position of its first occurrence. Duplicates still count
//!   towards [`Limits::max_fields`].
//! - A tag with an empty value, or an unescaped `=` inside a tag value, is an error.
//! - Timestamp: optional `i64` (may be negative) in the request's precision, converted with
//!   [`Precision::to_millis`]; a missing timestamp means `now`. A timestamp in seconds whose milliseconds do
//!   not fit an `i64` is out of range. Anything after the timestamp except whitespace is an error. A
//!   timestamp more than [`Limits::max_future_ms`] after `now` is refused ([`ErrorKind::TimestampInFuture`]),
//!   naming the precision it would fit if it fits another (milliseconds sent with `precision=s`).
//!
//! # Errors
//! Parsing stops at the first bad line: [`parse_into`] leaves the points of all earlier lines in its output
//! (so a caller can apply that prefix, as InfluxDB does) and returns the 1-based line number and the reason.
//! Texts quoted in errors are cut to [`SNIPPET_BYTES`] bytes, so an error message stays small whatever the
//! input.
//!
//! # Performance
//! The body is checked for UTF-8 once (SIMD), and lines are found with `memchr`; each line is then scanned
//! once, byte by byte, with a 256-entry class table. A name without escapes becomes its [`SmolStr`] straight
//! from the input (inline up to 23 bytes, so no allocation for typical names and tag values; a body that is
//! not valid UTF-8 is checked token by token, to name the bad element). The only allocations are the vectors
//! of the [`Point`] (and long strings); tags and fields are collected in scratch vectors reused across lines and then
//! moved into exactly sized vectors. Simple decimals (up to 19 significant digits, value below 2^53, power
//! of ten within ±22) are converted exactly with one floating-point multiply or divide; anything else goes to
//! the standard library's correctly rounded parser.

use std::fmt::Write as _;

use crate::model::{Point, Precision, SmolStr};

/// Limits on what one line may carry; going over one is a parse error naming the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest line in bytes, not counting its `\n`.
    pub max_line_bytes: usize,
    /// Most tags on one line.
    pub max_tags: usize,
    /// Most fields on one line (duplicates included).
    pub max_fields: usize,
    /// Longest measurement, tag key or field key, in bytes after unescaping.
    pub max_name_bytes: usize,
    /// Longest tag value, in bytes after unescaping.
    pub max_tag_value_bytes: usize,
    /// Latest timestamp accepted, in milliseconds after the parse's `now` (a timestamp in the wrong unit,
    /// milliseconds sent as seconds, lands thousands of years ahead and would sit in the database forever).
    pub max_future_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 64 << 10,
            max_tags: 64,
            max_fields: 256,
            max_name_bytes: 256,
            max_tag_value_bytes: 1024,
            max_future_ms: 86_400_000,
        }
    }
}

impl Limits {
    /// Checks a point that arrived already structured (gRPC, remote write, scraping, recording rules)
    /// against the limits line protocol enforces as it parses: names present and within
    /// `max_name_bytes`, tag values present and within `max_tag_value_bytes`, at most `max_tags` tags with
    /// unique keys (`tags` sorted, as [`Point`] requires), one to `max_fields` fields with named keys, and a
    /// timestamp at most `max_future_ms` after `now_ms`. Field values are not checked: NaN is how Prometheus
    /// marks a stale series.
    pub fn check(&self, p: &Point, now_ms: i64) -> Result<(), PointError> {
        self.check_series(p)?;
        self.check_timestamp(p.timestamp, now_ms)
    }

    /// The part of [`Limits::check`] that concerns a point's series (measurement, tags, field names): the
    /// same for every sample of a series, so a sender of many samples per series checks it once.
    pub fn check_series(&self, p: &Point) -> Result<(), PointError> {
        let name = |element: Element, n: &str| {
            if n.is_empty() {
                Err(PointError::EmptyName { element })
            } else if n.len() > self.max_name_bytes {
                Err(PointError::NameTooLong { element, name: snippet(n.as_bytes()), max: self.max_name_bytes })
            } else {
                Ok(())
            }
        };
        name(Element::Measurement, &p.measurement)?;
        if p.tags.len() > self.max_tags {
            return Err(PointError::TooManyTags { count: p.tags.len(), max: self.max_tags });
        }
        for (i, (k, v)) in p.tags.iter().enumerate() {
            name(Element::TagKey, k)?;
            if v.is_empty() {
                return Err(PointError::EmptyTagValue { tag: snippet(k.as_bytes()) });
            }
            if v.len() > self.max_tag_value_bytes {
                return Err(PointError::TagValueTooLong { tag: snippet(k.as_bytes()), max: self.max_tag_value_bytes });
            }
            if i > 0 && p.tags[i - 1].0 >= *k {
                return Err(PointError::DuplicateTag(snippet(k.as_bytes())));
            }
        }
        if p.fields.is_empty() {
            return Err(PointError::NoFields);
        }
        if p.fields.len() > self.max_fields {
            return Err(PointError::TooManyFields { count: p.fields.len(), max: self.max_fields });
        }
        for (k, _) in &p.fields {
            name(Element::FieldKey, k)?;
        }
        Ok(())
    }

    /// The part of [`Limits::check`] that concerns a timestamp (ms): at most `max_future_ms` after `now_ms`.
    pub fn check_timestamp(&self, timestamp_ms: i64, now_ms: i64) -> Result<(), PointError> {
        let ahead_ms = timestamp_ms.saturating_sub(now_ms);
        if ahead_ms > self.max_future_ms {
            return Err(PointError::InFuture {
                timestamp_ms,
                ahead_ms,
                max_ms: self.max_future_ms,
                fits: Precision::fitting(timestamp_ms, Precision::Milliseconds, now_ms, self.max_future_ms),
            });
        }
        Ok(())
    }
}

/// Why a structured point breaks the [`Limits`] (see [`Limits::check`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PointError {
    #[error("empty {element}")]
    EmptyName { element: Element },
    #[error("{element} {name:?} is longer than the limit of {max} bytes (limits.max_name_bytes)")]
    NameTooLong { element: Element, name: String, max: usize },
    #[error("{count} tags, more than limits.max_tags ({max})")]
    TooManyTags { count: usize, max: usize },
    #[error("tag {tag:?} has an empty value (leave the tag out instead)")]
    EmptyTagValue { tag: String },
    #[error("value of tag {tag:?} is longer than the limit of {max} bytes (limits.max_tag_value_bytes)")]
    TagValueTooLong { tag: String, max: usize },
    #[error("tag {0:?} given twice")]
    DuplicateTag(String),
    #[error("no fields")]
    NoFields,
    #[error("{count} fields, more than limits.max_fields ({max})")]
    TooManyFields { count: usize, max: usize },
    #[error(
        "timestamp {timestamp_ms} ms is {} in the future, more than limits.max_future ({}){}",
        crate::model::human_ms(*.ahead_ms), crate::model::human_ms(*.max_ms),
        .fits.map(|p| format!("; it reads as a current time in {}: timestamps here are milliseconds", p.name())).unwrap_or_default()
    )]
    InFuture { timestamp_ms: i64, ahead_ms: i64, max_ms: i64, fits: Option<Precision> },
}

/// The first bad line of a body and why it is bad.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number in the body (blank and comment lines count).
    pub line: usize,
    pub kind: ErrorKind,
}

/// Why a line was refused. Texts taken from the input are cut to [`SNIPPET_BYTES`] bytes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    #[error("line is {len} bytes, more than the limit of {max} (limits.max_line_bytes)")]
    LineTooLong { len: usize, max: usize },
    #[error("missing measurement name at the start of the line")]
    MissingMeasurement,
    #[error("no fields: expected `measurement[,tag=value...] field=value[,field=value...] [timestamp]`")]
    MissingFields,
    #[error("{element} is not valid UTF-8")]
    InvalidUtf8 { element: Element },
    #[error(
        "{element} contains a control character (such as a tab or carriage return); line protocol does not allow them"
    )]
    ControlCharacter { element: Element },
    #[error("{element} {name:?} is longer than the limit of {max} bytes (limits.max_name_bytes)")]
    NameTooLong { element: Element, name: String, max: usize },
    #[error("invalid tag {tag:?}: {problem}")]
    InvalidTag { tag: String, problem: TagProblem },
    #[error("duplicate tag key {0:?}")]
    DuplicateTag(String),
    #[error("value of tag {tag:?} is longer than the limit of {max} bytes (limits.max_tag_value_bytes)")]
    TagValueTooLong { tag: String, max: usize },
    #[error("more than {max} tags (limits.max_tags)")]
    TooManyTags { max: usize },
    #[error("invalid field {field:?}: {problem}")]
    InvalidField { field: String, problem: FieldProblem },
    #[error(
        "field {field:?} has invalid value {value:?}: expected a number (1.5, -2e3), an integer (12i), \
         an unsigned integer (12u) or a boolean (true, false)"
    )]
    InvalidFieldValue { field: String, value: String },
    #[error("field {field:?} has value {value:?}: NaN and infinity are not valid in line protocol")]
    NonFiniteField { field: String, value: String },
    #[error("field {field:?} value {value:?} is out of range for a {kind}")]
    FieldOutOfRange { field: String, value: String, kind: NumberKind },
    #[error("field {field:?} is a string; Pharos stores numbers only (use a tag for text)")]
    StringField { field: String },
    #[error("string value of field {field:?} has no closing quote")]
    UnterminatedString { field: String },
    #[error("more than {max} fields (limits.max_fields)")]
    TooManyFields { max: usize },
    #[error("invalid timestamp {0:?}: expected an integer in the request's precision")]
    InvalidTimestamp(String),
    #[error("timestamp {0:?} is out of range")]
    TimestampOutOfRange(String),
    #[error(
        "timestamp {raw} is {} in the future with precision {}, more than limits.max_future ({}){}",
        crate::model::human_ms(*.ahead_ms), .precision.name(), crate::model::human_ms(*.max_ms), unit_hint(*.fits)
    )]
    TimestampInFuture { raw: String, precision: Precision, ahead_ms: i64, max_ms: i64, fits: Option<Precision> },
    #[error("unexpected text after the timestamp: {0:?}")]
    TrailingGarbage(String),
}

/// ", it reads as a current time in ms: ..." when a timestamp fits another precision, else nothing.
pub fn unit_hint(fits: Option<Precision>) -> String {
    match fits {
        Some(p) => format!(
            "; it reads as a current time with precision {p}: send precision={p} on /write or \
             --precision {p} with pharosctl write",
            p = p.name()
        ),
        None => String::new(),
    }
}

/// The part of a line an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Element {
    #[error("measurement")]
    Measurement,
    #[error("tag key")]
    TagKey,
    #[error("tag value")]
    TagValue,
    #[error("field key")]
    FieldKey,
}

/// What is wrong with a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TagProblem {
    #[error("missing `=value`")]
    MissingEquals,
    #[error("empty key (a stray comma?)")]
    EmptyKey,
    #[error("empty value (leave the tag out instead)")]
    EmptyValue,
    #[error(r"unescaped `=` in the value (write it as `\=`)")]
    UnescapedEquals,
}

/// What is wrong with a field, apart from its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("missing `=value`")]
    MissingEquals,
    #[error("empty key (a stray comma?)")]
    EmptyKey,
    #[error("empty value")]
    EmptyValue,
}

/// The numeric type a field value was written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberKind {
    #[error("64-bit float")]
    Float,
    #[error("signed 64-bit integer")]
    Integer,
    #[error("unsigned 64-bit integer")]
    Unsigned,
}

/// Longest piece of input quoted in an error, in bytes.
pub const SNIPPET_BYTES: usize = 64;

/// Parses a whole body. Blank lines and lines starting with `#` are skipped; a point without a timestamp
/// gets `now_ns` (converted to milliseconds). On the first bad line returns its number and reason, with `out`
/// holding the points of every line before it (and nothing from that line or after).
pub fn parse_into(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    limits: &Limits,
    out: &mut Vec<Point>,
) -> Result<(), ParseError> {
    let now_ms = Precision::Nanoseconds.to_millis(now_ns);
    let utf8 = std::str::from_utf8(body).is_ok();
    let mut parser = LineParser { precision, now_ms, limits, utf8, tags: Vec::new(), fields: Vec::new() };
    let mut rest = body;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let (raw, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        rest = next;
        let line = trim(raw);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let parsed = if raw.len() > limits.max_line_bytes {
            Err(ErrorKind::LineTooLong { len: raw.len(), max: limits.max_line_bytes })
        } else {
            parser.parse_line(line)
        };
        match parsed {
            Ok(p) => out.push(p),
            Err(kind) => return Err(ParseError { line: line_no, kind }),
        }
    }
    Ok(())
}

/// Parses a whole body into a new vector; see [`parse_into`]. On error the good prefix is dropped.
pub fn parse(body: &[u8], precision: Precision, now_ns: i64, limits: &Limits) -> Result<Vec<Point>, ParseError> {
    let mut out = Vec::new();
    parse_into(body, precision, now_ns, limits, &mut out)?;
    Ok(out)
}

/// Appends `p` as one line of line protocol, `\n` included, with the timestamp in milliseconds (parse it back
/// with [`Precision::Milliseconds`]) and each value in the shortest form that parses back to the same `f64`.
///
/// Every point that [`parse`] can produce round-trips exactly. Some points cannot be written faithfully
/// because line protocol has no way to say them; for those the output still stays one well-formed line:
/// control characters in names, and a backslash ending a name, are written as U+FFFD; fields whose value is
/// NaN or infinite are left out, and a point left without fields writes nothing. (Empty names and a
/// measurement starting with `#` are written as they are and will not parse back.)
pub fn write_line(p: &Point, out: &mut String) {
    let mut fields = p.fields.iter().filter(|(_, v)| v.is_finite()).peekable();
    if fields.peek().is_none() {
        return;
    }
    write_escaped(out, &p.measurement, MEASUREMENT_SPECIAL);
    for (k, v) in &p.tags {
        out.push(',');
        write_escaped(out, k, KEY_SPECIAL);
        out.push('=');
        write_escaped(out, v, KEY_SPECIAL);
    }
    let mut sep = ' ';
    for (k, v) in fields {
        out.push(sep);
        sep = ',';
        write_escaped(out, k, KEY_SPECIAL);
        // `{:?}` is the shortest text that parses back to the same f64, in plain or exponent form
        // (`58.13`, `1e-7`, `1.5e300`), all of which the float grammar above accepts.
        let _ = write!(out, "={v:?}");
    }
    let _ = writeln!(out, " {}", p.timestamp);
}

// ---------------------------------------------------------------------------------------------------------
// Byte classes.

const COMMA: u8 = 1;
const EQUALS: u8 = 2;
const SPACE: u8 = 4;
const BACKSLASH: u8 = 8;
const CONTROL: u8 = 16;

/// Delimiters of a measurement, which are also the bytes a backslash escapes in it.
const MEASUREMENT_SPECIAL: u8 = COMMA | SPACE;
/// Delimiters of tag keys, tag values and field keys, which are also the bytes a backslash escapes in them.
const KEY_SPECIAL: u8 = COMMA | EQUALS | SPACE;

/// Class bits of every byte; 0 for the ordinary ones (including all of UTF-8's multi-byte sequences).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i as u8 {
            b',' => COMMA,
            b'=' => EQUALS,
            b' ' => SPACE,
            b'\\' => BACKSLASH,
            0..=0x1f | 0x7f => CONTROL,
            _ => 0,
        };
        i += 1;
    }
    t
};

#[inline]
fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

/// Strips spaces, tabs and carriage returns from both ends (a `\r` can only end a line: inside one it is a
/// control character).
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

// ---------------------------------------------------------------------------------------------------------
// The line parser.

/// Per-body state: settings and scratch vectors reused across lines.
struct LineParser<'a> {
    precision: Precision,
    now_ms: i64,
    limits: &'a Limits,
    /// The whole body is valid UTF-8, so every token cut at ASCII delimiters is too.
    utf8: bool,
    tags: Vec<(SmolStr, SmolStr)>,
    fields: Vec<(SmolStr, f64)>,
}

/// A name token found by [`scan_name`]: where it ends and whether it holds an escape to remove.
struct Token {
    end: usize,
    escaped: bool,
}

impl LineParser<'_> {
    /// Parses one line, already trimmed, non-empty and not a comment.
    fn parse_line(&mut self, line: &[u8]) -> Result<Point, ErrorKind> {
        let limits = self.limits;
        self.tags.clear();
        self.fields.clear();

        // Measurement: up to the first unescaped comma (tags follow) or space (fields follow).
        let tok = scan_name(line, 0, MEASUREMENT_SPECIAL, Element::Measurement)?;
        if tok.end == 0 {
            return Err(ErrorKind::MissingMeasurement);
        }
        let measurement =
            name_string(&line[..tok.end], tok.escaped, MEASUREMENT_SPECIAL, Element::Measurement, self.utf8)?;
        check_name(&measurement, Element::Measurement, limits)?;
        let mut pos = tok.end;

        // Tags: `,key=value` repeated.
        while line.get(pos) == Some(&b',') {
            let k_start = pos + 1;
            let k = scan_name(line, k_start, KEY_SPECIAL, Element::TagKey)?;
            let key_raw = &line[k_start..k.end];
            if key_raw.is_empty() {
                return Err(ErrorKind::InvalidTag { tag: String::new(), problem: TagProblem::EmptyKey });
            }
            if line.get(k.end) != Some(&b'=') {
                let tag = lossy_name(key_raw, KEY_SPECIAL);
                return Err(ErrorKind::InvalidTag { tag, problem: TagProblem::MissingEquals });
            }
            let key = name_string(key_raw, k.escaped, KEY_SPECIAL, Element::TagKey, self.utf8)?;
            check_name(&key, Element::TagKey, limits)?;
            let v_start = k.end + 1;
            let v = scan_name(line, v_start, KEY_SPECIAL, Element::TagValue)?;
            if line.get(v.end) == Some(&b'=') {
                return Err(ErrorKind::InvalidTag {
                    tag: snippet(key.as_bytes()),
                    problem: TagProblem::UnescapedEquals,
                });
            }
            if v.end == v_start {
                return Err(ErrorKind::InvalidTag { tag: snippet(key.as_bytes()), problem: TagProblem::EmptyValue });
            }
            let value = name_string(&line[v_start..v.end], v.escaped, KEY_SPECIAL, Element::TagValue, self.utf8)?;
            if value.len() > limits.max_tag_value_bytes {
                return Err(ErrorKind::TagValueTooLong {
                    tag: snippet(key.as_bytes()),
                    max: limits.max_tag_value_bytes,
                });
            }
            if self.tags.len() == limits.max_tags {
                return Err(ErrorKind::TooManyTags { max: limits.max_tags });
            }
            self.tags.push((key, value));
            pos = v.end;
        }
        // Sorted by key; an unstable sort is fine because equal keys are refused right after.
        if !self.tags.is_sorted_by(|a, b| a.0 < b.0) {
            self.tags.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if let Some(w) = self.tags.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(ErrorKind::DuplicateTag(snippet(w[0].0.as_bytes())));
            }
        }

        // The measurement or the last tag value stopped at a space or at the end of the line.
        pos = skip_spaces(line, pos);
        if pos == line.len() {
            return Err(ErrorKind::MissingFields);
        }

        // Fields: `key=value` separated by commas.
        let mut n_fields = 0;
        let mut first_string: Option<SmolStr> = None;
        loop {
            let k = scan_name(line, pos, KEY_SPECIAL, Element::FieldKey)?;
            let key_raw = &line[pos..k.end];
            if key_raw.is_empty() {
                return Err(ErrorKind::InvalidField { field: String::new(), problem: FieldProblem::EmptyKey });
            }
            if line.get(k.end) != Some(&b'=') {
                let field = lossy_name(key_raw, KEY_SPECIAL);
                return Err(ErrorKind::InvalidField { field, problem: FieldProblem::MissingEquals });
            }
            let key = name_string(key_raw, k.escaped, KEY_SPECIAL, Element::FieldKey, self.utf8)?;
            check_name(&key, Element::FieldKey, limits)?;
            if n_fields == limits.max_fields {
                return Err(ErrorKind::TooManyFields { max: limits.max_fields });
            }
            n_fields += 1;
            let v_start = k.end + 1;
            if line.get(v_start) == Some(&b'"') {
                // A string: skip it exactly (commas, spaces and `=` inside are not delimiters) and remember
                // it; the line is refused once the rest of it has been checked.
                let Some(close) = closing_quote(line, v_start + 1) else {
                    return Err(ErrorKind::UnterminatedString { field: snippet(key.as_bytes()) });
                };
                pos = close + 1;
                if !matches!(line.get(pos), None | Some(b',' | b' ')) {
                    let value = snippet(&line[v_start..value_end(line, pos)]);
                    return Err(ErrorKind::InvalidFieldValue { field: snippet(key.as_bytes()), value });
                }
                first_string.get_or_insert(key);
            } else {
                let v_end = value_end(line, v_start);
                let raw = &line[v_start..v_end];
                let value = parse_value(raw).map_err(|e| e.into_kind(&key, raw))?;
                self.fields.push((key, value));
                pos = v_end;
            }
            if line.get(pos) == Some(&b',') {
                pos += 1;
            } else {
                break;
            }
        }

        // Timestamp: the fields stopped at a space or at the end of the line.
        pos = skip_spaces(line, pos);
        let timestamp = if pos == line.len() {
            self.now_ms
        } else {
            let t_end = line[pos..].iter().position(|&b| b == b' ').map_or(line.len(), |i| pos + i);
            let raw = &line[pos..t_end];
            let t = parse_timestamp(raw)?;
            let after = skip_spaces(line, t_end);
            if after < line.len() {
                return Err(ErrorKind::TrailingGarbage(snippet(&line[after..])));
            }
            if self.precision == Precision::Seconds && t.checked_mul(1_000).is_none() {
                return Err(ErrorKind::TimestampOutOfRange(snippet(raw)));
            }
            let ms = self.precision.to_millis(t);
            let ahead_ms = ms.saturating_sub(self.now_ms);
            if ahead_ms > self.limits.max_future_ms {
                return Err(ErrorKind::TimestampInFuture {
                    raw: snippet(raw),
                    precision: self.precision,
                    ahead_ms,
                    max_ms: self.limits.max_future_ms,
                    fits: Precision::fitting(t, self.precision, self.now_ms, self.limits.max_future_ms),
                });
            }
            ms
        };

        if let Some(field) = first_string {
            return Err(ErrorKind::StringField { field: snippet(field.as_bytes()) });
        }
        dedup_fields(&mut self.fields);
        Ok(Point {
            measurement,
            // Exactly sized copies; the scratch vectors keep their capacity for the next line.
            tags: self.tags.drain(..).collect(),
            fields: self.fields.drain(..).collect(),
            timestamp,
        })
    }
}

/// Scans a name from `start` to the first unescaped byte of `special` (or the end of the line). A backslash
/// followed by a byte of `special` escapes it; any other backslash is an ordinary byte.
#[inline]
fn scan_name(line: &[u8], start: usize, special: u8, element: Element) -> Result<Token, ErrorKind> {
    let mut i = start;
    let mut escaped = false;
    while let Some(&b) = line.get(i) {
        let c = class(b);
        if c == 0 {
            i += 1;
            continue;
        }
        if c & special != 0 {
            break;
        }
        if c == CONTROL {
            return Err(ErrorKind::ControlCharacter { element });
        }
        if c == BACKSLASH && line.get(i + 1).is_some_and(|&n| class(n) & special != 0) {
            escaped = true;
            i += 2;
            continue;
        }
        // A literal backslash, or a byte special elsewhere but not here (`=` in a measurement).
        i += 1;
    }
    Ok(Token { end: i, escaped })
}

/// Removes the escapes of `raw` (a token found by [`scan_name`] with the same `special`), as bytes.
fn unescape(raw: &[u8], special: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'\\' {
            if let Some(&n) = raw.get(i + 1) {
                if class(n) & special != 0 {
                    v.push(n);
                    i += 2;
                    continue;
                }
            }
        }
        v.push(b);
        i += 1;
    }
    v
}

/// The owned, unescaped, UTF-8-checked text of a name token. `utf8`: the token lies in a body already known
/// to be valid UTF-8.
#[inline]
fn name_string(raw: &[u8], escaped: bool, special: u8, element: Element, utf8: bool) -> Result<SmolStr, ErrorKind> {
    if !escaped {
        // Fast path: the bytes are the name.
        if utf8 {
            // SAFETY: tokens start and end at ASCII delimiters (or line ends) of a body that `parse_into` checked
            // to be valid UTF-8; cutting valid UTF-8 at ASCII bytes leaves valid UTF-8.
            return Ok(SmolStr::new(unsafe { std::str::from_utf8_unchecked(raw) }));
        }
        return match std::str::from_utf8(raw) {
            Ok(s) => Ok(SmolStr::new(s)),
            Err(_) => Err(ErrorKind::InvalidUtf8 { element }),
        };
    }
    String::from_utf8(unescape(raw, special)).map(SmolStr::from).map_err(|_| ErrorKind::InvalidUtf8 { element })
}

/// Unescaped text of a name for an error message, whatever its bytes.
fn lossy_name(raw: &[u8], special: u8) -> String {
    snippet(&unescape(raw, special))
}

#[inline]
fn check_name(name: &str, element: Element, limits: &Limits) -> Result<(), ErrorKind> {
    if name.len() > limits.max_name_bytes {
        return Err(ErrorKind::NameTooLong { element, name: snippet(name.as_bytes()), max: limits.max_name_bytes });
    }
    Ok(())
}

/// Text for an error message: lossy UTF-8, at most [`SNIPPET_BYTES`] bytes of input, `...` when cut.
fn snippet(b: &[u8]) -> String {
    if b.len() <= SNIPPET_BYTES {
        return String::from_utf8_lossy(b).into_owned();
    }
    // Cutting inside a multi-byte character only turns its head into U+FFFD.
    let mut s = String::from_utf8_lossy(&b[..SNIPPET_BYTES]).into_owned();
    s.push_str("...");
    s
}

fn skip_spaces(line: &[u8], mut pos: usize) -> usize {
    while line.get(pos) == Some(&b' ') {
        pos += 1;
    }
    pos
}

/// End of an unquoted field value: the first comma or space, or the end of the line.
#[inline]
fn value_end(line: &[u8], start: usize) -> usize {
    let mut i = start;
    while let Some(&b) = line.get(i) {
        if class(b) & (COMMA | SPACE) != 0 {
            break;
        }
        i += 1;
    }
    i
}

/// Index of the quote closing a string whose contents start at `start`; `\` escapes the byte after it.
fn closing_quote(line: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        match *line.get(i)? {
            b'"' => return Some(i),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// Keeps one entry per field key: the value of its last occurrence, at the position of its first.
fn dedup_fields(fields: &mut Vec<(SmolStr, f64)>) {
    let n = fields.len();
    if n < 2 {
        return;
    }
    if n <= 16 {
        // Few fields (the common case): a pairwise check that usually finds nothing, cheaper than sorting.
        let dup = (1..n).any(|i| fields[..i].iter().any(|f| f.0 == fields[i].0));
        if !dup {
            return;
        }
    }
    // O(n log n) whatever the input, so a line of 256 identical keys cannot make this quadratic.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| fields[a].0.cmp(&fields[b].0).then(a.cmp(&b)));
    let mut keep = vec![true; n];
    let mut any = false;
    let mut i = 0;
    while i < n {
        // `order[i..j]` are the occurrences of one key, in line order.
        let first = order[i];
        let mut j = i + 1;
        while j < n && fields[order[j]].0 == fields[first].0 {
            keep[order[j]] = false;
            j += 1;
        }
        if j > i + 1 {
            fields[first].1 = fields[order[j - 1]].1;
            any = true;
        }
        i = j;
    }
    if any {
        let mut i = 0;
        fields.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
}

// ---------------------------------------------------------------------------------------------------------
// Values.

/// Why an unquoted field value was refused; turned into an [`ErrorKind`] naming the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueError {
    Invalid,
    OutOfRange(NumberKind),
}

impl ValueError {
    fn into_kind(self, field: &str, raw: &[u8]) -> ErrorKind {
        let (field, value) = (snippet(field.as_bytes()), snippet(raw));
        match self {
            ValueError::OutOfRange(kind) => ErrorKind::FieldOutOfRange { field, value, kind },
            ValueError::Invalid if raw.is_empty() => {
                ErrorKind::InvalidField { field, problem: FieldProblem::EmptyValue }
            }
            ValueError::Invalid if is_non_finite_word(raw) => ErrorKind::NonFiniteField { field, value },
            ValueError::Invalid => ErrorKind::InvalidFieldValue { field, value },
        }
    }
}

/// `inf`, `+Infinity`, `-NaN`, ...: what other formats use for non-finite floats.
fn is_non_finite_word(raw: &[u8]) -> bool {
    let word = match raw {
        [b'+' | b'-', rest @ ..] => rest,
        _ => raw,
    };
    [&b"inf"[..], b"infinity", b"nan"].iter().any(|w| word.eq_ignore_ascii_case(w))
}

/// Parses an unquoted field value: float, `i` integer, `u` unsigned or boolean.
#[inline]
fn parse_value(raw: &[u8]) -> Result<f64, ValueError> {
    match raw {
        [b'0'..=b'9' | b'-' | b'.', .., b'i'] => parse_int(&raw[..raw.len() - 1]),
        [b'0'..=b'9', .., b'u'] => parse_uint(&raw[..raw.len() - 1]).map(|v| v as f64),
        [b'0'..=b'9' | b'-' | b'.', ..] => parse_float(raw),
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Ok(1.0),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Ok(0.0),
        _ => Err(ValueError::Invalid),
    }
}

/// Decimal digits only (at least one) as a `u64`; `OutOfRange(kind)` if too large.
fn parse_digits(digits: &[u8], kind: NumberKind) -> Result<u64, ValueError> {
    if digits.is_empty() {
        return Err(ValueError::Invalid);
    }
    let mut v: u64 = 0;
    let mut overflow = false;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            // A bad byte is a syntax error even after an overflow.
            return Err(ValueError::Invalid);
        }
        match v.checked_mul(10).and_then(|v| v.checked_add(u64::from(d))) {
            Some(n) => v = n,
            None => overflow = true,
        }
    }
    if overflow {
        return Err(ValueError::OutOfRange(kind));
    }
    Ok(v)
}

fn parse_uint(digits: &[u8]) -> Result<u64, ValueError> {
    parse_digits(digits, NumberKind::Unsigned)
}

fn parse_int(raw: &[u8]) -> Result<f64, ValueError> {
    let (neg, digits) = match raw {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, raw),
    };
    let magnitude = parse_digits(digits, NumberKind::Integer)?;
    let v = if neg {
        // -2^63 is the one magnitude that fits negated but not positive.
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    v.map(|v| v as f64).ok_or(ValueError::OutOfRange(NumberKind::Integer))
}

/// Powers of ten that are exact in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Parses a float: `-?(digits[.digits]|.digits|digits.)([eE][+-]?digits)?`.
fn parse_float(raw: &[u8]) -> Result<f64, ValueError> {
    let mut i = 0;
    let neg = raw.first() == Some(&b'-');
    if neg {
        i = 1;
    }
    // Significant digits go into `mantissa` (up to 19, so it cannot overflow) and `exp10` tracks the position
    // of the decimal point; `inexact` means digits were dropped and only the slow path can round correctly.
    let mut mantissa: u64 = 0;
    let mut n_sig = 0u32;
    let mut exp10: i64 = 0;
    let mut inexact = false;
    let mut n_digits = 0usize;
    let mut in_fraction = false;
    while let Some(&b) = raw.get(i) {
        match b {
            b'0'..=b'9' => {
                n_digits += 1;
                if mantissa == 0 && b == b'0' {
                    // Leading zero: only moves the point if after it.
                } else if n_sig < 19 {
                    mantissa = mantissa * 10 + u64::from(b - b'0');
                    n_sig += 1;
                } else {
                    inexact = true;
                    if !in_fraction {
                        exp10 += 1;
                    }
                    i += 1;
                    continue;
                }
                if in_fraction {
                    exp10 -= 1;
                }
            }
            b'.' if !in_fraction => in_fraction = true,
            _ => break,
        }
        i += 1;
    }
    if n_digits == 0 {
        return Err(ValueError::Invalid);
    }
    if let Some(&(b'e' | b'E')) = raw.get(i) {
        i += 1;
        let exp_neg = match raw.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        let mut e: i64 = 0;
        while let Some(&b @ b'0'..=b'9') = raw.get(i) {
            // Saturate: anything this large is 0 or out of range anyway.
            e = (e * 10 + i64::from(b - b'0')).min(1_000_000);
            i += 1;
        }
        if i == start {
            return Err(ValueError::Invalid);
        }
        exp10 += if exp_neg { -e } else { e };
    }
    if i != raw.len() {
        return Err(ValueError::Invalid);
    }
    let sign = if neg { -1.0 } else { 1.0 };
    if mantissa == 0 && !inexact {
        return Ok(sign * 0.0);
    }
    // Exact fast path: both operands are exact f64s, so one IEEE operation rounds correctly.
    if !inexact && mantissa < (1 << 53) && (-22..=22).contains(&exp10) {
        let m = mantissa as f64;
        let v = if exp10 >= 0 { m * POW10[exp10 as usize] } else { m / POW10[(-exp10) as usize] };
        return Ok(sign * v);
    }
    // Slow path: the standard library parser (correctly rounded) accepts everything the grammar above does.
    let text = std::str::from_utf8(raw).map_err(|_| ValueError::Invalid)?;
    let v: f64 = text.parse().map_err(|_| ValueError::Invalid)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ValueError::OutOfRange(NumberKind::Float))
    }
}

/// Parses a timestamp: `-?digits` fitting an `i64`.
fn parse_timestamp(raw: &[u8]) -> Result<i64, ErrorKind> {
    let (neg, digits) = match raw {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, raw),
    };
    let magnitude = match parse_digits(digits, NumberKind::Integer) {
        Ok(m) => m,
        Err(ValueError::OutOfRange(_)) => return Err(ErrorKind::TimestampOutOfRange(snippet(raw))),
        Err(ValueError::Invalid) => return Err(ErrorKind::InvalidTimestamp(snippet(raw))),
    };
    let t = if neg { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() };
    t.ok_or_else(|| ErrorKind::TimestampOutOfRange(snippet(raw)))
}

// ---------------------------------------------------------------------------------------------------------
// Writing.

/// Appends `s` with the bytes of `special` escaped. Control characters and a trailing backslash, which line
/// protocol cannot express, become U+FFFD so the line stays well-formed.
fn write_escaped(out: &mut String, s: &str, special: u8) {
    let needs_work = s.bytes().any(|b| class(b) & (special | CONTROL) != 0) || s.ends_with('\\');
    if !needs_work {
        out.push_str(s);
        return;
    }
    let last = s.len().saturating_sub(1);
    for (i, c) in s.char_indices() {
        match u8::try_from(c) {
            Ok(b) if class(b) & special != 0 => {
                out.push('\\');
                out.push(c);
            }
            Ok(b) if class(b) == CONTROL => out.push('\u{FFFD}'),
            Ok(b'\\') if i == last => out.push('\u{FFFD}'),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
#[path = "line_protocol_test.rs"]
mod tests;
