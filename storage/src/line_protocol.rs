//! InfluxDB line protocol: `measurement[,tag=value...] field=value[,field=value...] [timestamp]`.
//!
//! Parsing works on bytes in one pass per line. Escapes follow InfluxDB: in measurements a backslash escapes
//! comma and space; in tag keys, tag values and field keys it escapes comma, equals sign and space; a
//! backslash before any other byte is kept literally. Field values: floats (`1`, `-1.5e3`), integers (`12i`),
//! unsigned (`12u`), booleans (`t`, `true`, `F`, ...) all become f64; strings (`"..."`, with `\"` and `\\`)
//! are parsed correctly so the line is understood, then refused: Pharos stores numbers only.
//!
//! A duplicate field key in one line keeps the last value (as InfluxDB does); a duplicate tag key is an error.
//! The first bad line stops parsing: the points of the lines before it are in the output, so a caller can
//! apply that prefix and report the line.

use crate::model::{Point, Precision};

/// Limits on what one line may carry; over a limit is a parse error naming the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_line_bytes: usize,
    pub max_tags: usize,
    pub max_fields: usize,
    /// Measurement, tag key and field key.
    pub max_name_bytes: usize,
    pub max_tag_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 64 << 10,
            max_tags: 64,
            max_fields: 256,
            max_name_bytes: 256,
            max_tag_value_bytes: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number in the request body.
    pub line: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    #[error("missing measurement")]
    MissingMeasurement,
    #[error("missing fields (expected `measurement[,tags] field=value[,...] [timestamp]`)")]
    MissingFields,
    #[error("tag {0:?} has no `=value`")]
    TagWithoutValue(String),
    #[error("tag {0:?} has an empty key or value")]
    EmptyTag(String),
    #[error("duplicate tag key {0:?}")]
    DuplicateTag(String),
    #[error("field {0:?} has no `=value`")]
    FieldWithoutValue(String),
    #[error("empty field key")]
    EmptyFieldKey,
    #[error("field {field:?} has invalid value {value:?} (numbers like 1.5, 12i, 12u, or true/false)")]
    InvalidFieldValue { field: String, value: String },
    #[error("field {field:?} value {value:?} is out of range for its type")]
    FieldOutOfRange { field: String, value: String },
    #[error("field {field:?} is a string; Pharos stores numbers only (put text in a tag)")]
    StringField { field: String },
    #[error("unterminated string in field {0:?}")]
    UnterminatedString(String),
    #[error("invalid timestamp {0:?} (an integer in the request's precision)")]
    InvalidTimestamp(String),
    #[error("unexpected text after the timestamp: {0:?}")]
    TrailingGarbage(String),
    #[error("line is {0} bytes, more than the limit {1} (limits.max_line_bytes)")]
    LineTooLong(usize, usize),
    #[error("{0} tags, more than the limit {1} (limits.max_tags)")]
    TooManyTags(usize, usize),
    #[error("{0} fields, more than the limit {1} (limits.max_fields)")]
    TooManyFields(usize, usize),
    #[error("name {0:?} is longer than the limit {1} bytes (limits.max_name_bytes)")]
    NameTooLong(String, usize),
    #[error("tag value of {0:?} is longer than the limit {1} bytes (limits.max_tag_value_bytes)")]
    TagValueTooLong(String, usize),
    #[error("not valid UTF-8")]
    InvalidUtf8,
}

/// Parses a whole body; see the module docs for what happens at the first bad line.
pub fn parse_into(
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    limits: &Limits,
    out: &mut Vec<Point>,
) -> Result<(), ParseError> {
    let now_ms = now_ns.div_euclid(1_000_000);
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = trim(raw);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let err = |kind| ParseError { line: i + 1, kind };
        if line.len() > limits.max_line_bytes {
            return Err(err(ErrorKind::LineTooLong(line.len(), limits.max_line_bytes)));
        }
        let p = parse_line(line, precision, now_ms, limits).map_err(err)?;
        out.push(p);
    }
    Ok(())
}

pub fn parse(body: &[u8], precision: Precision, now_ns: i64, limits: &Limits) -> Result<Vec<Point>, ParseError> {
    let mut out = Vec::new();
    parse_into(body, precision, now_ns, limits, &mut out)?;
    Ok(out)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

/// Finds the end of a token: the first unescaped byte in `stops`, or the end.
fn token_end(s: &[u8], from: usize, stops: &[u8]) -> usize {
    let mut i = from;
    while i < s.len() {
        match s[i] {
            b'\\' if i + 1 < s.len() => i += 2,
            c if stops.contains(&c) => return i,
            _ => i += 1,
        }
    }
    s.len()
}

/// Unescapes a token where a backslash escapes any byte of `escapable`.
fn unescape(tok: &[u8], escapable: &[u8]) -> Result<String, ErrorKind> {
    if !tok.contains(&b'\\') {
        return std::str::from_utf8(tok).map(str::to_owned).map_err(|_| ErrorKind::InvalidUtf8);
    }
    let mut v = Vec::with_capacity(tok.len());
    let mut i = 0;
    while i < tok.len() {
        if tok[i] == b'\\' && i + 1 < tok.len() && escapable.contains(&tok[i + 1]) {
            v.push(tok[i + 1]);
            i += 2;
        } else {
            v.push(tok[i]);
            i += 1;
        }
    }
    String::from_utf8(v).map_err(|_| ErrorKind::InvalidUtf8)
}

const MEASUREMENT_ESC: &[u8] = b", ";
const KEY_ESC: &[u8] = b",= ";

fn parse_line(s: &[u8], precision: Precision, now_ms: i64, limits: &Limits) -> Result<Point, ErrorKind> {
    // Measurement.
    let m_end = token_end(s, 0, b", ");
    if m_end == 0 {
        return Err(ErrorKind::MissingMeasurement);
    }
    let measurement = unescape(&s[..m_end], MEASUREMENT_ESC)?;
    if measurement.len() > limits.max_name_bytes {
        return Err(ErrorKind::NameTooLong(measurement, limits.max_name_bytes));
    }
    let mut pos = m_end;
    // Tags.
    let mut tags: Vec<(String, String)> = Vec::new();
    while pos < s.len() && s[pos] == b',' {
        let start = pos + 1;
        let end = token_end(s, start, b", ");
        let tok = &s[start..end];
        let eq = token_end(tok, 0, b"=");
        if eq == tok.len() {
            return Err(ErrorKind::TagWithoutValue(String::from_utf8_lossy(tok).into_owned()));
        }
        let key = unescape(&tok[..eq], KEY_ESC)?;
        let value = unescape(&tok[eq + 1..], KEY_ESC)?;
        if key.is_empty() || value.is_empty() {
            return Err(ErrorKind::EmptyTag(String::from_utf8_lossy(tok).into_owned()));
        }
        if key.len() > limits.max_name_bytes {
            return Err(ErrorKind::NameTooLong(key, limits.max_name_bytes));
        }
        if value.len() > limits.max_tag_value_bytes {
            return Err(ErrorKind::TagValueTooLong(key, limits.max_tag_value_bytes));
        }
        tags.push((key, value));
        if tags.len() > limits.max_tags {
            return Err(ErrorKind::TooManyTags(tags.len(), limits.max_tags));
        }
        pos = end;
    }
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = tags.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ErrorKind::DuplicateTag(w[0].0.clone()));
    }
    // Fields.
    while pos < s.len() && s[pos] == b' ' {
        pos += 1;
    }
    if pos >= s.len() {
        return Err(ErrorKind::MissingFields);
    }
    let mut fields: Vec<(String, f64)> = Vec::new();
    loop {
        let k_end = token_end(s, pos, b"= ,");
        let key = unescape(&s[pos..k_end], KEY_ESC)?;
        if k_end >= s.len() || s[k_end] != b'=' {
            if key.is_empty() {
                return Err(ErrorKind::MissingFields);
            }
            return Err(ErrorKind::FieldWithoutValue(key));
        }
        if key.is_empty() {
            return Err(ErrorKind::EmptyFieldKey);
        }
        if key.len() > limits.max_name_bytes {
            return Err(ErrorKind::NameTooLong(key, limits.max_name_bytes));
        }
        let v_start = k_end + 1;
        if s.get(v_start) == Some(&b'"') {
            // Skip the string correctly (so commas and spaces inside it are not separators), then refuse it.
            let mut i = v_start + 1;
            loop {
                match s.get(i) {
                    None => return Err(ErrorKind::UnterminatedString(key)),
                    Some(b'\\') => i += 2,
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            return Err(ErrorKind::StringField { field: key });
        }
        let v_end = token_end(s, v_start, b", ");
        let value = parse_value(&key, &s[v_start..v_end])?;
        match fields.iter_mut().find(|(k, _)| *k == key) {
            Some(f) => f.1 = value,
            None => fields.push((key, value)),
        }
        if fields.len() > limits.max_fields {
            return Err(ErrorKind::TooManyFields(fields.len(), limits.max_fields));
        }
        pos = v_end;
        if pos < s.len() && s[pos] == b',' {
            pos += 1;
            continue;
        }
        break;
    }
    // Timestamp.
    while pos < s.len() && s[pos] == b' ' {
        pos += 1;
    }
    let timestamp = if pos >= s.len() {
        now_ms
    } else {
        let t_end = s[pos..].iter().position(|&b| b == b' ').map(|p| pos + p).unwrap_or(s.len());
        let tok = &s[pos..t_end];
        let text = std::str::from_utf8(tok).map_err(|_| ErrorKind::InvalidUtf8)?;
        let t: i64 = text.parse().map_err(|_| ErrorKind::InvalidTimestamp(text.to_string()))?;
        let rest = trim(&s[t_end..]);
        if !rest.is_empty() {
            return Err(ErrorKind::TrailingGarbage(String::from_utf8_lossy(rest).into_owned()));
        }
        precision.to_millis(t)
    };
    Ok(Point { measurement, tags, fields, timestamp })
}

fn parse_value(field: &str, tok: &[u8]) -> Result<f64, ErrorKind> {
    let bad =
        || ErrorKind::InvalidFieldValue { field: field.to_string(), value: String::from_utf8_lossy(tok).into_owned() };
    let range =
        || ErrorKind::FieldOutOfRange { field: field.to_string(), value: String::from_utf8_lossy(tok).into_owned() };
    let text = std::str::from_utf8(tok).map_err(|_| bad())?;
    match text {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(1.0),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(0.0),
        "" => return Err(bad()),
        _ => {}
    }
    let (num, suffix) = text.split_at(text.len() - 1);
    match suffix {
        "i" => {
            if !valid_int(num, true) {
                return Err(bad());
            }
            num.parse::<i64>().map(|v| v as f64).map_err(|_| range())
        }
        "u" => {
            if !valid_int(num, false) {
                return Err(bad());
            }
            num.parse::<u64>().map(|v| v as f64).map_err(|_| range())
        }
        _ => {
            // Only plain decimal notation: Rust also accepts "inf", "NaN" and "infinity", InfluxDB does not.
            let ok = text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
                && text.bytes().any(|b| b.is_ascii_digit());
            if !ok {
                return Err(bad());
            }
            let v: f64 = text.parse().map_err(|_| bad())?;
            if !v.is_finite() {
                return Err(range());
            }
            Ok(v)
        }
    }
}

fn valid_int(s: &str, signed: bool) -> bool {
    let digits = if signed { s.strip_prefix('-').unwrap_or(s) } else { s };
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn escape_into(out: &mut String, s: &str, escapable: &[u8]) {
    for c in s.chars() {
        if c.is_ascii() && escapable.contains(&(c as u8)) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Writes a point as one line (ms precision; floats in shortest round-trip form).
pub fn write_line(p: &Point, out: &mut String) {
    use std::fmt::Write;
    escape_into(out, &p.measurement, MEASUREMENT_ESC);
    for (k, v) in &p.tags {
        out.push(',');
        escape_into(out, k, KEY_ESC);
        out.push('=');
        escape_into(out, v, KEY_ESC);
    }
    out.push(' ');
    for (i, (k, v)) in p.fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        escape_into(out, k, KEY_ESC);
        // `{:?}` prints the shortest string that parses back to the same f64, always with a '.' or 'e'.
        let _ = write!(out, "={v:?}");
    }
    let _ = writeln!(out, " {}", p.timestamp);
}

#[cfg(test)]
#[path = "line_protocol_test.rs"]
mod tests;
