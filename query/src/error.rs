//! Query errors. Parse and plan errors point at a byte offset of the query text; [`QueryError::render`]
//! turns that into line and column with the offending line underlined, for CLI and HTTP answers.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A syntax error at a byte offset of the query text.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[error("{message} at position {pos}")]
pub struct ParseError {
    pub pos: usize,
    pub message: String,
}

impl ParseError {
    pub fn new(pos: usize, message: impl Into<String>) -> ParseError {
        ParseError { pos, message: message.into() }
    }
}

#[derive(Debug, Clone, Error, Serialize, Deserialize)]
pub enum QueryError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// The statement parses but cannot run as written (an aggregate mixed with a raw field, a condition on
    /// a field value, an unknown function, ...).
    #[error("{message}{}", pos.map(|p| format!(" at position {p}")).unwrap_or_default())]
    Invalid { pos: Option<usize>, message: String },
    /// A configured limit was reached (series touched, points scanned, buckets, result rows).
    #[error("query limit exceeded: {0}")]
    Limit(String),
    #[error("query timed out after {0} ms; narrow the time range or the tag filter, or raise query.timeout")]
    Timeout(u64),
    /// A shard could not answer (no leader reachable, replica failure).
    #[error("shard {shard}: {message}")]
    Shard { shard: u32, message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    pub fn invalid(pos: usize, message: impl Into<String>) -> QueryError {
        QueryError::Invalid { pos: Some(pos), message: message.into() }
    }

    pub fn invalid_nopos(message: impl Into<String>) -> QueryError {
        QueryError::Invalid { pos: None, message: message.into() }
    }

    /// Whether the client's query is at fault (HTTP 400, gRPC InvalidArgument) rather than the cluster.
    pub fn is_client_error(&self) -> bool {
        matches!(self, QueryError::Parse(_) | QueryError::Invalid { .. } | QueryError::Limit(_))
    }

    pub fn pos(&self) -> Option<usize> {
        match self {
            QueryError::Parse(p) => Some(p.pos),
            QueryError::Invalid { pos, .. } => *pos,
            _ => None,
        }
    }

    /// The message with line and column, and for positioned errors the query line with a caret under the
    /// offending place:
    /// ```text
    /// error at line 1, column 8: unknown function "meen"
    ///   SELECT meen(x) FROM cpu
    ///          ^
    /// ```
    pub fn render(&self, text: &str) -> String {
        let Some(pos) = self.pos() else { return self.to_string() };
        let pos = pos.min(text.len());
        let before = &text[..floor_char_boundary(text, pos)];
        let line_no = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before[line_start..].chars().count() + 1;
        let line_end = text[line_start..].find('\n').map(|i| line_start + i).unwrap_or(text.len());
        let message = match self {
            QueryError::Parse(p) => p.message.clone(),
            QueryError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let (shown, caret) = window(&text[line_start..line_end], col - 1);
        format!("error at line {line_no}, column {col}: {message}\n  {shown}\n  {}^", " ".repeat(caret))
    }
}

/// A long line cut to about 100 characters around the column `at` (0-based, in characters), with `...`
/// where it was cut; and the caret's column in what is shown. A short line is shown whole.
fn window(line: &str, at: usize) -> (String, usize) {
    const BEFORE: usize = 60;
    const AFTER: usize = 40;
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= BEFORE + AFTER {
        return (line.to_string(), at);
    }
    let start = at.saturating_sub(BEFORE);
    let end = (at + AFTER).min(chars.len());
    let mut shown = String::new();
    let mut caret = at - start;
    if start > 0 {
        shown.push_str("...");
        caret += 3;
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push_str("...");
    }
    (shown, caret)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_points_at_the_column_of_the_right_line() {
        let q = "SELECT x\nFROM cpu WHERE host = 'a' AND";
        let e = QueryError::invalid(q.find("AND").unwrap(), "expected a condition after AND");
        let r = e.render(q);
        assert!(r.starts_with("error at line 2, column 27: expected a condition after AND"), "{r}");
        let caret = format!("\n  FROM cpu WHERE host = 'a' AND\n  {}^", " ".repeat(26));
        assert!(r.ends_with(&caret), "{r}");
    }

    #[test]
    fn a_long_line_is_shown_around_the_column_and_the_caret_still_points_at_it() {
        let q = format!("SELECT {} FROM cpu WHERE x = ", "a + ".repeat(50_000));
        let e = QueryError::invalid(q.len(), "expected a value");
        let r = e.render(&q);
        assert!(r.len() < 400, "the message stays short: {} bytes", r.len());
        let lines: Vec<&str> = r.lines().collect();
        assert!(lines[1].starts_with("  ...") && lines[1].ends_with("WHERE x = "), "{r}");
        assert_eq!(lines[2].len(), lines[1].len() + 1, "the caret sits just past the end of the line: {r}");
        // A cut in the middle of the line shows both ends cut, the caret under the place.
        let q = format!("{}XYZ{}", "b".repeat(500), "c".repeat(500));
        let r = QueryError::invalid(500, "here").render(&q);
        let lines: Vec<&str> = r.lines().collect();
        let caret = lines[2].find('^').unwrap();
        assert_eq!(&lines[1][caret..caret + 3], "XYZ", "{r}");
        assert!(lines[1].ends_with("...") && lines[1].starts_with("  ..."), "{r}");
    }
}
