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
        format!(
            "error at line {line_no}, column {col}: {message}\n  {}\n  {}^",
            &text[line_start..line_end],
            " ".repeat(col - 1)
        )
    }
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
}
