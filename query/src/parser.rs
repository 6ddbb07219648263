//! The parser of the query language: a hand-written lexer and a recursive-descent parser producing
//! [`crate::ast`] statements. The entry point is [`parse`].
//!
//! Grammar (InfluxQL 1.x shape; keywords are case-insensitive, `[..]` is optional, `{..}` repeats):
//!
//! ```text
//! query      = [ statement { ";" statement } ] [ ";" ]          (an empty query is an error)
//! statement  = select | show
//! select     = SELECT field { "," field } FROM sources [ WHERE expr ] [ GROUP BY dim { "," dim } ] [ fill ]
//!              [ HAVING expr ] [ fill ] [ ORDER BY time [ ASC | DESC ] ] [ LIMIT int ] [ OFFSET int ]
//!              [ SLIMIT int ] [ SOFFSET int ] [ tz "(" string ")" ]              (fill at most once)
//! field      = expr [ AS name ]
//! sources    = source { "," source }
//! source     = regex | [ name "." [ name ] "." ] ( name | regex )      (database and policy are dropped)
//! dim        = time "(" duration [ "," [ "-" ] duration ] ")" | "*" | name [ "::" tag ]
//! fill       = fill "(" ( null | none | previous | linear | [ "-" ] number ) ")"
//! show       = SHOW MEASUREMENTS [ on ] [ WITH MEASUREMENT match ] [ WHERE expr ] [ LIMIT int ] [ OFFSET int ]
//!            | SHOW TAG KEYS [ on ] [ FROM sources ] [ WHERE expr ] [ LIMIT int ] [ OFFSET int ]
//!            | SHOW TAG VALUES [ on ] [ FROM sources ] WITH KEY ( match | IN "(" name { "," name } ")" )
//!              [ WHERE expr ] [ LIMIT int ] [ OFFSET int ]
//!            | SHOW FIELD KEYS [ on ] [ FROM sources ]
//!            | SHOW SERIES CARDINALITY [ on ] [ FROM sources ] [ WHERE expr ]
//!            | SHOW SERIES [ on ] [ FROM sources ] [ WHERE expr ] [ LIMIT int ] [ OFFSET int ]
//!            | SHOW DATABASES
//!            | SHOW RETENTION POLICIES [ on ]
//! on         = ON name                                                 (accepted and ignored)
//! match      = ( "=" | "!=" ) name | ( "=~" | "!~" ) regex
//! expr       = and { OR and }
//! and        = cmp { AND cmp }
//! cmp        = sum { ( "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=" ) sum | ( "=~" | "!~" ) regex }
//! sum        = product { ( "+" | "-" ) product }
//! product    = unary { ( "*" | "/" | "%" ) unary }
//! unary      = "-" unary | primary          ("-" right before a number or duration gives a negative literal)
//! primary    = integer | number | duration | string | regex | true | false | now "(" ")" | "*"
//!            | ident "(" [ expr { "," expr } ] ")" | DISTINCT name | name [ "::" ( tag | field ) ] | "(" expr ")"
//! name       = ident | quoted_ident
//! ```
//!
//! Lexical rules:
//! - identifiers are `[A-Za-z_][A-Za-z0-9_]*` or double-quoted (`"my field"`, escapes `\"` and `\\`); the clause
//!   keywords (SELECT, FROM, WHERE, GROUP, BY, HAVING, ORDER, LIMIT, OFFSET, SLIMIT, SOFFSET, AND, OR, AS, SHOW,
//!   WITH) are reserved and must be quoted to be used as names;
//! - strings are single-quoted with the escapes `\'`, `\"`, `\\` and `\n`;
//! - numbers: `12` is an integer, `1.5`, `.5` and `1e3` are floats; an integer directly followed by a unit is a
//!   duration: `ns`, `u`/`µ`/`us`, `ms`, `s`, `m`, `h`, `d`, `w`, compound as in `1h30m`;
//! - a regular expression `/.../` may stand wherever an operand is expected (so `/` is division only after an
//!   operand); `\/` is a slash, every other backslash reaches the `regex` crate unchanged;
//! - `-- comment` runs to the end of the line.
//!
//! Positions: every [`ParseError`] and every AST node carries the byte offset of its token in the text; end of
//! input is `text.len()`. A binary expression's `pos` is that of its operator, a call's that of its name, a negative
//! literal's or a negation's that of the `-`.

use regex::Regex;

use crate::ast::{
    BinOp, Expr, Field, Fill, GroupBy, IdentKind, NameMatch, Select, Source, Statement, TagGroup, TimeGroup,
};
use crate::error::ParseError;

type Result<T> = std::result::Result<T, ParseError>;

/// How deeply parentheses, function calls and nested expressions may nest (guards the parser's stack).
const MAX_DEPTH: usize = 64;
/// How many operator nodes one expression may hold: bounds the tree height, so that dropping or walking the tree
/// recursively cannot overflow the stack either.
const MAX_OPERATORS: usize = 2000;

const NANOS_PER_MS: i128 = 1_000_000;

/// Words that cannot be bare identifiers (they start or join clauses); quote them to use them as names.
const RESERVED: &[&str] = &[
    "AND", "AS", "BY", "FROM", "GROUP", "HAVING", "LIMIT", "OFFSET", "OR", "ORDER", "SELECT", "SHOW", "SLIMIT",
    "SOFFSET", "WHERE", "WITH",
];

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Parses one or more statements separated by `;`.
///
/// ```
/// use pharos_query::ast::Statement;
/// let stmts = pharos_query::parse("SELECT mean(x) FROM cpu GROUP BY time(1m); SHOW DATABASES").unwrap();
/// assert!(matches!(stmts[0], Statement::Select(_)));
/// assert!(matches!(stmts[1], Statement::ShowDatabases));
/// ```
pub fn parse(text: &str) -> std::result::Result<Vec<Statement>, ParseError> {
    let mut p = Parser { src: text, pos: 0, peeked: None, depth: 0, operators: 0 };
    let mut statements = Vec::new();
    loop {
        while p.eat_sym(Sym::Semicolon)? {}
        if p.at_eof()? {
            break;
        }
        statements.push(p.statement()?);
        if !p.at_eof()? && !p.is_sym(Sym::Semicolon)? {
            return Err(p.expected("\";\" or end of query"));
        }
    }
    if statements.is_empty() {
        return Err(ParseError::new(text.len(), "empty query"));
    }
    Ok(statements)
}

// ---------------------------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------------------------

/// Punctuation and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sym {
    LParen,
    RParen,
    Comma,
    Semicolon,
    Dot,
    DoubleColon,
    Star,
    Plus,
    Minus,
    Slash,
    Percent,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    ReMatch,
    ReNotMatch,
}

#[derive(Debug, Clone)]
enum Tok {
    /// A bare identifier or keyword, as written.
    Ident(String),
    /// A double-quoted identifier, unescaped.
    Quoted(String),
    /// A single-quoted string, unescaped.
    Str(String),
    /// An integer literal; its range against i64 is checked where the sign is known.
    Int(u64),
    Num(f64),
    /// A duration literal in nanoseconds (never negative here).
    Dur(i128),
    Sym(Sym),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

/// Skips whitespace and `--` comments from `pos`; returns the offset of the next significant character.
fn skip_trivia(src: &str, mut pos: usize) -> usize {
    loop {
        let rest = &src[pos..];
        let trimmed = rest.trim_start();
        pos += rest.len() - trimmed.len();
        if !trimmed.starts_with("--") {
            return pos;
        }
        match trimmed.find('\n') {
            Some(i) => pos += i + 1,
            None => return src.len(),
        }
    }
}

/// Lexes the token at or after `pos` in the normal mode (where `/` is the division operator).
fn lex(src: &str, pos: usize) -> Result<Token> {
    let start = skip_trivia(src, pos);
    let rest = &src[start..];
    let Some(c) = rest.chars().next() else { return Ok(Token { tok: Tok::Eof, start, end: start }) };
    let next = rest.as_bytes().get(1).copied();
    let sym = |s: Sym, len: usize| Ok(Token { tok: Tok::Sym(s), start, end: start + len });
    match c {
        '(' => sym(Sym::LParen, 1),
        ')' => sym(Sym::RParen, 1),
        ',' => sym(Sym::Comma, 1),
        ';' => sym(Sym::Semicolon, 1),
        '*' => sym(Sym::Star, 1),
        '+' => sym(Sym::Plus, 1),
        '-' => sym(Sym::Minus, 1),
        '/' => sym(Sym::Slash, 1),
        '%' => sym(Sym::Percent, 1),
        '=' if next == Some(b'~') => sym(Sym::ReMatch, 2),
        '=' => sym(Sym::Eq, 1),
        '!' if next == Some(b'=') => sym(Sym::Ne, 2),
        '!' if next == Some(b'~') => sym(Sym::ReNotMatch, 2),
        '<' if next == Some(b'=') => sym(Sym::Le, 2),
        '<' if next == Some(b'>') => sym(Sym::Ne, 2),
        '<' => sym(Sym::Lt, 1),
        '>' if next == Some(b'=') => sym(Sym::Ge, 2),
        '>' => sym(Sym::Gt, 1),
        ':' if next == Some(b':') => sym(Sym::DoubleColon, 2),
        '.' if next.is_some_and(|b| b.is_ascii_digit()) => lex_number(src, start),
        '.' => sym(Sym::Dot, 1),
        '0'..='9' => lex_number(src, start),
        '\'' => {
            let (value, end) = lex_quoted(src, start, '\'', "string")?;
            Ok(Token { tok: Tok::Str(value), start, end })
        }
        '"' => {
            let (value, end) = lex_quoted(src, start, '"', "quoted identifier")?;
            Ok(Token { tok: Tok::Quoted(value), start, end })
        }
        c if c.is_ascii_alphabetic() || c == '_' => {
            let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            Ok(Token { tok: Tok::Ident(rest[..len].to_string()), start, end: start + len })
        }
        c => Err(ParseError::new(start, format!("unexpected character {}", quote(&c.to_string())))),
    }
}

fn is_unit_char(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == 'µ' || c == 'μ'
}

/// The length in bytes of the run of ASCII digits at the start of `s`.
fn digits_len(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

/// Lexes an integer, a float or a duration starting at `start` (a digit, or a `.` before a digit).
fn lex_number(src: &str, start: usize) -> Result<Token> {
    let bytes = src.as_bytes();
    let mut end = start + digits_len(&src[start..]);
    let mut float = false;
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        float = true;
        end += 1 + digits_len(&src[end + 1..]);
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut j = end + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if bytes.get(j).is_some_and(u8::is_ascii_digit) {
            float = true;
            end = j + digits_len(&src[j..]);
        }
    }
    let followed_by_unit = src[end..].chars().next().is_some_and(is_unit_char);
    if float {
        if followed_by_unit {
            let bad_end =
                end + src[end..].find(|c: char| !(is_unit_char(c) || c.is_ascii_digit())).unwrap_or(src.len() - end);
            return Err(ParseError::new(
                start,
                format!(
                    "invalid number {}: a duration must be an integer followed by a unit",
                    quote(&src[start..bad_end])
                ),
            ));
        }
        let text = &src[start..end];
        return match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Token { tok: Tok::Num(v), start, end }),
            _ => Err(ParseError::new(start, format!("number {} is out of range", quote(text)))),
        };
    }
    if followed_by_unit {
        return lex_duration(src, start);
    }
    let text = &src[start..end];
    match text.parse::<u64>() {
        Ok(v) => Ok(Token { tok: Tok::Int(v), start, end }),
        Err(_) => Err(ParseError::new(start, format!("integer {} is out of range", quote(text)))),
    }
}

/// Lexes a duration such as `10s`, `1h30m` or `1700000000000000000ns` starting at `start`.
fn lex_duration(src: &str, start: usize) -> Result<Token> {
    let mut pos = start;
    let mut total: i128 = 0;
    let out_of_range =
        |end: usize| ParseError::new(start, format!("duration {} is out of range", quote(&src[start..end])));
    loop {
        let digits_end = pos + digits_len(&src[pos..]);
        let unit_len = src[digits_end..].find(|c: char| !is_unit_char(c)).unwrap_or(src.len() - digits_end);
        let unit_end = digits_end + unit_len;
        let unit = &src[digits_end..unit_end];
        if unit.is_empty() {
            return Err(ParseError::new(
                start,
                format!("expected a duration unit after {}", quote(&src[start..unit_end])),
            ));
        }
        let nanos_per_unit: i128 = match unit {
            "ns" => 1,
            "u" | "µ" | "μ" | "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "w" => 604_800 * 1_000_000_000,
            _ => return Err(ParseError::new(start, format!("invalid duration unit {}", quote(unit)))),
        };
        let count: u64 = src[pos..digits_end].parse().map_err(|_| out_of_range(unit_end))?;
        // count < 2^64 and the unit < 2^40, so the product fits an i128; only the sum needs checking.
        total = total.checked_add(i128::from(count) * nanos_per_unit).ok_or_else(|| out_of_range(unit_end))?;
        pos = unit_end;
        if !src[pos..].starts_with(|c: char| c.is_ascii_digit()) {
            break;
        }
    }
    if total / NANOS_PER_MS > i128::from(i64::MAX) {
        return Err(out_of_range(pos));
    }
    Ok(Token { tok: Tok::Dur(total), start, end: pos })
}

/// Lexes a string or a quoted identifier delimited by `delim` starting at `start`; returns its unescaped value and
/// the offset after the closing delimiter. The escapes are InfluxQL's: `\\`, `\'`, `\"` and `\n`.
fn lex_quoted(src: &str, start: usize, delim: char, what: &str) -> Result<(String, usize)> {
    let body = start + delim.len_utf8();
    let mut out = String::new();
    let mut chars = src[body..].char_indices();
    while let Some((i, c)) = chars.next() {
        if c == delim {
            return Ok((out, body + i + c.len_utf8()));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some((_, 'n')) => out.push('\n'),
            Some((_, e @ ('\\' | '\'' | '"'))) => out.push(e),
            Some((_, e)) => {
                return Err(ParseError::new(body + i, format!("invalid escape \"\\{e}\" in {what}")));
            }
            None => break,
        }
    }
    Err(ParseError::new(start, format!("unterminated {what}")))
}

/// Lexes and compiles a regular expression `/.../` starting at `start` (which holds the `/`); returns it with the
/// offset after the closing slash.
fn lex_regex(src: &str, start: usize) -> Result<(Regex, usize)> {
    let body = start + 1;
    let mut pattern = String::new();
    let mut end = None;
    let mut chars = src[body..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '/' => {
                end = Some(body + i + 1);
                break;
            }
            '\\' => match chars.next() {
                Some((_, '/')) => pattern.push('/'),
                Some((_, other)) => {
                    pattern.push('\\');
                    pattern.push(other);
                }
                None => break,
            },
            c => pattern.push(c),
        }
    }
    let Some(end) = end else { return Err(ParseError::new(start, "unterminated regular expression")) };
    match Regex::new(&pattern) {
        Ok(re) => Ok((re, end)),
        Err(e) => Err(ParseError::new(
            start,
            format!("invalid regular expression {}: {}", quote(&src[start..end]), regex_error_summary(&e)),
        )),
    }
}

/// The one-line reason of a regex error (its `Display` draws the pattern with a caret over several lines).
fn regex_error_summary(e: &regex::Error) -> String {
    let full = e.to_string();
    match full.lines().find_map(|l| l.strip_prefix("error: ")) {
        Some(reason) => reason.to_string(),
        None => full.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Quotes a piece of query text for an error message, shortened when long.
fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    let shown: String = if text.chars().count() > MAX_CHARS {
        text.chars().take(MAX_CHARS).chain("...".chars()).collect()
    } else {
        text.to_string()
    };
    if shown.contains('"') {
        format!("{shown:?}")
    } else {
        format!("\"{shown}\"")
    }
}

/// Builds a duration literal from exact nanoseconds (milliseconds truncate toward zero).
fn duration(nanos: i128, pos: usize) -> Expr {
    // lex_duration bounds |nanos| so that the milliseconds fit an i64.
    let ms = i64::try_from(nanos / NANOS_PER_MS).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX });
    Expr::Duration { ms, nanos, pos }
}

// ---------------------------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------------------------

struct Parser<'a> {
    src: &'a str,
    /// Where lexing resumes: the end of the last consumed token.
    pos: usize,
    /// The next token in normal mode, once looked at.
    peeked: Option<Token>,
    /// Current nesting of expressions (parentheses, call arguments).
    depth: usize,
    /// Operator nodes built in the current top-level expression.
    operators: usize,
}

impl Parser<'_> {
    // ---- token access -------------------------------------------------------------------------------------------

    fn peek(&mut self) -> Result<&Token> {
        let token = match self.peeked.take() {
            Some(t) => t,
            None => lex(self.src, self.pos)?,
        };
        Ok(self.peeked.insert(token))
    }

    /// Consumes and returns the next token.
    fn bump(&mut self) -> Result<Token> {
        let token = match self.peeked.take() {
            Some(t) => t,
            None => lex(self.src, self.pos)?,
        };
        self.pos = token.end;
        Ok(token)
    }

    fn at_eof(&mut self) -> Result<bool> {
        Ok(matches!(self.peek()?.tok, Tok::Eof))
    }

    /// The error for an unexpected next token: `expected X, found "tok"` or, at the end,
    /// `unexpected end of query, expected X`.
    fn expected(&mut self, what: &str) -> ParseError {
        let (start, end, eof) = match self.peek() {
            Ok(t) => (t.start, t.end, matches!(t.tok, Tok::Eof)),
            Err(e) => return e,
        };
        if eof {
            ParseError::new(start, format!("unexpected end of query, expected {what}"))
        } else {
            ParseError::new(start, format!("expected {what}, found {}", quote(&self.src[start..end])))
        }
    }

    fn is_sym(&mut self, sym: Sym) -> Result<bool> {
        Ok(matches!(self.peek()?.tok, Tok::Sym(s) if s == sym))
    }

    fn eat_sym(&mut self, sym: Sym) -> Result<bool> {
        let found = self.is_sym(sym)?;
        if found {
            self.bump()?;
        }
        Ok(found)
    }

    /// Consumes `sym` or fails with `expected {what}`.
    fn expect_sym(&mut self, sym: Sym, what: &str) -> Result<usize> {
        if self.is_sym(sym)? {
            Ok(self.bump()?.start)
        } else {
            Err(self.expected(what))
        }
    }

    fn is_kw(&mut self, kw: &str) -> Result<bool> {
        Ok(matches!(&self.peek()?.tok, Tok::Ident(w) if w.eq_ignore_ascii_case(kw)))
    }

    fn eat_kw(&mut self, kw: &str) -> Result<bool> {
        let found = self.is_kw(kw)?;
        if found {
            self.bump()?;
        }
        Ok(found)
    }

    /// Consumes the keyword `kw` (given in upper case) or fails with `expected KW`.
    fn expect_kw(&mut self, kw: &str) -> Result<usize> {
        if self.is_kw(kw)? {
            Ok(self.bump()?.start)
        } else {
            Err(self.expected(kw))
        }
    }

    /// Whether the next significant character opens a regular expression.
    fn at_regex(&self) -> bool {
        self.src[skip_trivia(self.src, self.pos)..].starts_with('/')
    }

    /// Consumes a regular expression (the caller checked [`Parser::at_regex`]).
    fn regex(&mut self) -> Result<(Regex, usize)> {
        let start = skip_trivia(self.src, self.pos);
        let (re, end) = lex_regex(self.src, start)?;
        self.pos = end;
        self.peeked = None;
        Ok((re, start))
    }

    /// A regular expression required after `op` (`=~` or `!~`).
    fn regex_after(&mut self, op: &str) -> Result<(Regex, usize)> {
        if self.at_regex() {
            self.regex()
        } else {
            Err(self.expected(&format!("a regular expression after {op}")))
        }
    }

    /// A name: a double-quoted identifier, or a bare one that is not a reserved word.
    fn name(&mut self, what: &str) -> Result<(String, usize)> {
        let token = self.peek()?;
        let name = match &token.tok {
            Tok::Quoted(s) => s.clone(),
            Tok::Ident(s) if !is_reserved(s) => s.clone(),
            _ => return Err(self.expected(what)),
        };
        let start = self.bump()?.start;
        Ok((name, start))
    }

    /// Whether a name (quoted, or bare and not reserved) comes next.
    fn name_follows(&mut self) -> Result<bool> {
        Ok(match &self.peek()?.tok {
            Tok::Quoted(_) => true,
            Tok::Ident(w) => !is_reserved(w),
            _ => false,
        })
    }

    /// A non-negative integer after the keyword `kw` (LIMIT, OFFSET, ...), which was consumed.
    fn count(&mut self, kw: &str) -> Result<u64> {
        if let Tok::Int(v) = self.peek()?.tok {
            self.bump()?;
            return Ok(v);
        }
        Err(self.expected_custom(&format!("{kw} expects a non-negative integer")))
    }

    /// Like [`Parser::expected`] for messages that are not of the form `expected X`.
    fn expected_custom(&mut self, message: &str) -> ParseError {
        let (start, end, eof) = match self.peek() {
            Ok(t) => (t.start, t.end, matches!(t.tok, Tok::Eof)),
            Err(e) => return e,
        };
        if eof {
            ParseError::new(start, format!("unexpected end of query, {message}"))
        } else {
            ParseError::new(start, format!("{message}, found {}", quote(&self.src[start..end])))
        }
    }

    fn optional_count(&mut self, kw: &str) -> Result<Option<u64>> {
        if self.eat_kw(kw)? {
            Ok(Some(self.count(kw)?))
        } else {
            Ok(None)
        }
    }

    // ---- statements ---------------------------------------------------------------------------------------------

    fn statement(&mut self) -> Result<Statement> {
        if self.eat_kw("SELECT")? {
            Ok(Statement::Select(Box::new(self.select()?)))
        } else if self.eat_kw("SHOW")? {
            self.show()
        } else {
            Err(self.expected("SELECT or SHOW"))
        }
    }

    fn select(&mut self) -> Result<Select> {
        let mut fields = Vec::new();
        loop {
            let expr = self.expr()?;
            let alias = if self.eat_kw("AS")? { Some(self.name("an alias")?.0) } else { None };
            fields.push(Field { expr, alias });
            if !self.eat_sym(Sym::Comma)? {
                break;
            }
        }
        self.expect_kw("FROM")?;
        let from = self.sources()?;
        let condition = self.optional_where()?;
        let group_by = if self.eat_kw("GROUP")? {
            self.expect_kw("BY")?;
            self.dimensions()?
        } else {
            GroupBy::default()
        };
        let mut fill = None;
        self.optional_fill(&mut fill)?;
        let having = if self.eat_kw("HAVING")? { Some(self.expr()?) } else { None };
        self.optional_fill(&mut fill)?;
        let order_desc = self.optional_order_by()?;
        let limit = self.optional_count("LIMIT")?;
        let offset = self.optional_count("OFFSET")?;
        let slimit = self.optional_count("SLIMIT")?;
        let soffset = self.optional_count("SOFFSET")?;
        let tz = self.optional_tz()?;
        Ok(Select {
            fields,
            from,
            condition,
            group_by,
            fill: fill.unwrap_or_default(),
            order_desc,
            limit,
            offset,
            slimit,
            soffset,
            having,
            tz,
        })
    }

    fn optional_where(&mut self) -> Result<Option<Expr>> {
        if self.eat_kw("WHERE")? {
            Ok(Some(self.expr()?))
        } else {
            Ok(None)
        }
    }

    fn optional_from(&mut self) -> Result<Vec<Source>> {
        if self.eat_kw("FROM")? {
            self.sources()
        } else {
            Ok(Vec::new())
        }
    }

    /// `ON db`, accepted and ignored (there is one database).
    fn optional_on(&mut self) -> Result<()> {
        if self.eat_kw("ON")? {
            self.name("a database name")?;
        }
        Ok(())
    }

    fn sources(&mut self) -> Result<Vec<Source>> {
        let mut sources = vec![self.source()?];
        while self.eat_sym(Sym::Comma)? {
            sources.push(self.source()?);
        }
        Ok(sources)
    }

    /// `m`, `"m"`, `/re/`, `db.rp.m`, `db..m`, `"db"."rp"."m"`, `db.rp./re/`: only the last part is kept.
    fn source(&mut self) -> Result<Source> {
        const WHAT: &str = "a measurement name or /regex/";
        if self.at_regex() {
            return Ok(Source::Regex(self.regex()?.0));
        }
        let (mut name, _) = self.name(WHAT)?;
        let mut dots = 0;
        while self.is_sym(Sym::Dot)? {
            if dots == 2 {
                return Err(self.expected_custom("a measurement is named by at most three parts (db.rp.measurement)"));
            }
            self.bump()?;
            dots += 1;
            if dots == 1 && self.is_sym(Sym::Dot)? {
                // `db..m`: the retention policy is left out.
                continue;
            }
            if self.at_regex() {
                return Ok(Source::Regex(self.regex()?.0));
            }
            name = self.name(WHAT)?.0;
        }
        Ok(Source::Name(name))
    }

    fn dimensions(&mut self) -> Result<GroupBy> {
        let mut group_by = GroupBy::default();
        let mut tags = Vec::new();
        let mut all = false;
        loop {
            let token = self.peek()?.clone();
            match &token.tok {
                Tok::Sym(Sym::Star) => {
                    self.bump()?;
                    all = true;
                }
                Tok::Ident(w) if w.eq_ignore_ascii_case("time") => {
                    self.bump()?;
                    if !self.is_sym(Sym::LParen)? {
                        return Err(ParseError::new(token.start, "GROUP BY time needs an interval, like time(1m)"));
                    }
                    if group_by.time.is_some() {
                        return Err(ParseError::new(token.start, "GROUP BY time(...) is given twice"));
                    }
                    group_by.time = Some(self.time_group(token.start)?);
                }
                Tok::Quoted(_) | Tok::Ident(_) => {
                    let (name, pos) = self.name("time(interval), a tag name or * in GROUP BY")?;
                    if self.is_sym(Sym::LParen)? {
                        return Err(ParseError::new(
                            pos,
                            format!(
                                "unknown GROUP BY function {}: only time(interval[, offset]) is supported",
                                quote(&name)
                            ),
                        ));
                    }
                    if self.eat_sym(Sym::DoubleColon)? && !self.eat_kw("tag")? {
                        return Err(self.expected("tag after \"::\" in GROUP BY"));
                    }
                    tags.push(name);
                }
                _ => return Err(self.expected("time(interval), a tag name or * in GROUP BY")),
            }
            if !self.eat_sym(Sym::Comma)? {
                break;
            }
        }
        group_by.tags = if all {
            TagGroup::All
        } else if tags.is_empty() {
            TagGroup::None
        } else {
            TagGroup::Tags(tags)
        };
        Ok(group_by)
    }

    /// The `(interval[, offset])` of `GROUP BY time`, whose keyword was at `pos`.
    fn time_group(&mut self, pos: usize) -> Result<TimeGroup> {
        self.expect_sym(Sym::LParen, "\"(\"")?;
        let (interval, interval_pos) = self.signed_duration("a GROUP BY time interval, like 1m")?;
        if interval <= 0 {
            return Err(ParseError::new(interval_pos, "the GROUP BY time interval must be positive"));
        }
        let interval_ms = whole_ms(interval, interval_pos, "GROUP BY time interval")?;
        let offset_ms = if self.eat_sym(Sym::Comma)? {
            let (offset, offset_pos) = self.signed_duration("a GROUP BY time offset, like 15m or -15m")?;
            whole_ms(offset, offset_pos, "GROUP BY time offset")?
        } else {
            0
        };
        self.expect_sym(Sym::RParen, "\")\"")?;
        Ok(TimeGroup { interval_ms, offset_ms, pos })
    }

    /// A duration literal, possibly preceded by `-`: its nanoseconds and position.
    fn signed_duration(&mut self, what: &str) -> Result<(i128, usize)> {
        let start = self.peek()?.start;
        let negative = self.eat_sym(Sym::Minus)?;
        match self.peek()?.tok {
            Tok::Dur(nanos) => {
                self.bump()?;
                Ok((if negative { -nanos } else { nanos }, start))
            }
            _ => Err(self.expected(what)),
        }
    }

    /// `fill(...)` if it comes next; `fill` holds the one already seen, if any.
    fn optional_fill(&mut self, fill: &mut Option<Fill>) -> Result<()> {
        if !self.is_kw("fill")? {
            return Ok(());
        }
        let pos = self.bump()?.start;
        if fill.is_some() {
            return Err(ParseError::new(pos, "fill(...) is given twice"));
        }
        self.expect_sym(Sym::LParen, "\"(\" after fill")?;
        const WHAT: &str = "null, none, previous, linear or a number in fill()";
        let token = self.peek()?.clone();
        let value = match &token.tok {
            Tok::Ident(w) if w.eq_ignore_ascii_case("null") => Fill::Null,
            Tok::Ident(w) if w.eq_ignore_ascii_case("none") => Fill::None,
            Tok::Ident(w) if w.eq_ignore_ascii_case("previous") => Fill::Previous,
            Tok::Ident(w) if w.eq_ignore_ascii_case("linear") => Fill::Linear,
            Tok::Int(v) => Fill::Value(*v as f64),
            Tok::Num(v) => Fill::Value(*v),
            Tok::Sym(Sym::Minus) => {
                self.bump()?;
                match self.peek()?.tok {
                    Tok::Int(v) => Fill::Value(-(v as f64)),
                    Tok::Num(v) => Fill::Value(-v),
                    _ => return Err(self.expected("a number after \"-\" in fill()")),
                }
            }
            _ => return Err(self.expected(WHAT)),
        };
        self.bump()?;
        self.expect_sym(Sym::RParen, "\")\" after the fill option")?;
        *fill = Some(value);
        Ok(())
    }

    /// `ORDER BY time [ASC|DESC]` (also `ORDER BY ASC|DESC`); returns whether the order is descending.
    fn optional_order_by(&mut self) -> Result<bool> {
        if !self.eat_kw("ORDER")? {
            return Ok(false);
        }
        self.expect_kw("BY")?;
        let token = self.peek()?.clone();
        match &token.tok {
            Tok::Ident(w) | Tok::Quoted(w) if w.eq_ignore_ascii_case("time") => {
                self.bump()?;
            }
            Tok::Ident(w) if w.eq_ignore_ascii_case("ASC") || w.eq_ignore_ascii_case("DESC") => {}
            Tok::Eof => return Err(self.expected("time")),
            _ => return Err(ParseError::new(token.start, "only ORDER BY time is supported")),
        }
        if self.eat_kw("DESC")? {
            return Ok(true);
        }
        self.eat_kw("ASC")?;
        Ok(false)
    }

    /// `tz('Europe/Paris')`
    fn optional_tz(&mut self) -> Result<Option<String>> {
        if !self.eat_kw("tz")? {
            return Ok(None);
        }
        self.expect_sym(Sym::LParen, "\"(\" after tz")?;
        let Tok::Str(zone) = self.peek()?.tok.clone() else {
            return Err(self.expected("a time zone string, like tz('Europe/Paris')"));
        };
        self.bump()?;
        self.expect_sym(Sym::RParen, "\")\"")?;
        Ok(Some(zone))
    }

    fn show(&mut self) -> Result<Statement> {
        if self.eat_kw("MEASUREMENTS")? {
            self.optional_on()?;
            let with = if self.eat_kw("WITH")? {
                self.expect_kw("MEASUREMENT")?;
                Some(self.name_match(false)?)
            } else {
                None
            };
            let condition = self.optional_where()?;
            let limit = self.optional_count("LIMIT")?;
            let offset = self.optional_count("OFFSET")?;
            return Ok(Statement::ShowMeasurements { with, condition, limit, offset });
        }
        if self.eat_kw("TAG")? {
            if self.eat_kw("KEYS")? {
                self.optional_on()?;
                let from = self.optional_from()?;
                let condition = self.optional_where()?;
                let limit = self.optional_count("LIMIT")?;
                let offset = self.optional_count("OFFSET")?;
                return Ok(Statement::ShowTagKeys { from, condition, limit, offset });
            }
            if self.eat_kw("VALUES")? {
                self.optional_on()?;
                let from = self.optional_from()?;
                self.expect_kw("WITH")?;
                self.expect_kw("KEY")?;
                let key = self.name_match(true)?;
                let condition = self.optional_where()?;
                let limit = self.optional_count("LIMIT")?;
                let offset = self.optional_count("OFFSET")?;
                return Ok(Statement::ShowTagValues { from, key, condition, limit, offset });
            }
            return Err(self.expected("KEYS or VALUES after SHOW TAG"));
        }
        if self.eat_kw("FIELD")? {
            self.expect_kw("KEYS")?;
            self.optional_on()?;
            let from = self.optional_from()?;
            return Ok(Statement::ShowFieldKeys { from });
        }
        if self.eat_kw("SERIES")? {
            if self.eat_kw("CARDINALITY")? {
                self.optional_on()?;
                let from = self.optional_from()?;
                let condition = self.optional_where()?;
                return Ok(Statement::ShowSeriesCardinality { from, condition });
            }
            self.optional_on()?;
            let from = self.optional_from()?;
            let condition = self.optional_where()?;
            let limit = self.optional_count("LIMIT")?;
            let offset = self.optional_count("OFFSET")?;
            return Ok(Statement::ShowSeries { from, condition, limit, offset });
        }
        if self.eat_kw("DATABASES")? {
            return Ok(Statement::ShowDatabases);
        }
        if self.eat_kw("RETENTION")? {
            self.expect_kw("POLICIES")?;
            self.optional_on()?;
            return Ok(Statement::ShowRetentionPolicies);
        }
        Err(self.expected("MEASUREMENTS, TAG KEYS, TAG VALUES, FIELD KEYS, SERIES, DATABASES or RETENTION POLICIES"))
    }

    /// `= name`, `!= name`, `=~ /re/`, `!~ /re/` and, when `allow_in`, `IN (name, ...)`.
    fn name_match(&mut self, allow_in: bool) -> Result<NameMatch> {
        let token = self.peek()?.clone();
        match token.tok {
            Tok::Sym(Sym::Eq) => {
                self.bump()?;
                Ok(NameMatch::Eq(self.name("a name after =")?.0))
            }
            Tok::Sym(Sym::Ne) => {
                self.bump()?;
                Ok(NameMatch::Ne(self.name("a name after !=")?.0))
            }
            Tok::Sym(Sym::ReMatch) => {
                self.bump()?;
                Ok(NameMatch::Re(self.regex_after("=~")?.0))
            }
            Tok::Sym(Sym::ReNotMatch) => {
                self.bump()?;
                Ok(NameMatch::NotRe(self.regex_after("!~")?.0))
            }
            Tok::Ident(w) if allow_in && w.eq_ignore_ascii_case("IN") => {
                self.bump()?;
                self.expect_sym(Sym::LParen, "\"(\" after IN")?;
                let mut names = vec![self.name("a tag key")?.0];
                while self.eat_sym(Sym::Comma)? {
                    names.push(self.name("a tag key")?.0);
                }
                self.expect_sym(Sym::RParen, "\",\" or \")\"")?;
                Ok(NameMatch::In(names))
            }
            _ if allow_in => Err(self.expected("=, !=, =~, !~ or IN")),
            _ => Err(self.expected("=, !=, =~ or !~")),
        }
    }

    // ---- expressions --------------------------------------------------------------------------------------------

    /// A whole expression; also the entry for parenthesized ones and call arguments (which bounds nesting).
    fn expr(&mut self) -> Result<Expr> {
        if self.depth == 0 {
            self.operators = 0;
        }
        if self.depth >= MAX_DEPTH {
            let pos = self.peek()?.start;
            return Err(ParseError::new(pos, format!("expression nested too deeply (more than {MAX_DEPTH} levels)")));
        }
        self.depth += 1;
        let result = self.or_expr();
        self.depth -= 1;
        result
    }

    /// Counts one more operator node of the current expression, failing past [`MAX_OPERATORS`].
    fn count_operator(&mut self, pos: usize) -> Result<()> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(ParseError::new(pos, format!("expression too complex (more than {MAX_OPERATORS} operators)")));
        }
        Ok(())
    }

    fn binary(&mut self, op: BinOp, lhs: Expr, rhs: Expr, pos: usize) -> Result<Expr> {
        self.count_operator(pos)?;
        Ok(Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs), pos })
    }

    fn or_expr(&mut self) -> Result<Expr> {
        let mut lhs = self.and_expr()?;
        while self.is_kw("OR")? {
            let pos = self.bump()?.start;
            let rhs = self.and_expr()?;
            lhs = self.binary(BinOp::Or, lhs, rhs, pos)?;
        }
        Ok(lhs)
    }

    fn and_expr(&mut self) -> Result<Expr> {
        let mut lhs = self.comparison()?;
        while self.is_kw("AND")? {
            let pos = self.bump()?.start;
            let rhs = self.comparison()?;
            lhs = self.binary(BinOp::And, lhs, rhs, pos)?;
        }
        Ok(lhs)
    }

    fn comparison(&mut self) -> Result<Expr> {
        let mut lhs = self.sum()?;
        loop {
            let op = match self.peek()?.tok {
                Tok::Sym(Sym::Eq) => BinOp::Eq,
                Tok::Sym(Sym::Ne) => BinOp::Ne,
                Tok::Sym(Sym::Lt) => BinOp::Lt,
                Tok::Sym(Sym::Le) => BinOp::Le,
                Tok::Sym(Sym::Gt) => BinOp::Gt,
                Tok::Sym(Sym::Ge) => BinOp::Ge,
                Tok::Sym(Sym::ReMatch) => BinOp::ReMatch,
                Tok::Sym(Sym::ReNotMatch) => BinOp::ReNotMatch,
                _ => return Ok(lhs),
            };
            let pos = self.bump()?.start;
            let rhs = if matches!(op, BinOp::ReMatch | BinOp::ReNotMatch) {
                let (re, re_pos) = self.regex_after(op.symbol())?;
                Expr::Regex { re, pos: re_pos }
            } else {
                self.sum()?
            };
            lhs = self.binary(op, lhs, rhs, pos)?;
        }
    }

    fn sum(&mut self) -> Result<Expr> {
        let mut lhs = self.product()?;
        loop {
            let op = match self.peek()?.tok {
                Tok::Sym(Sym::Plus) => BinOp::Add,
                Tok::Sym(Sym::Minus) => BinOp::Sub,
                _ => return Ok(lhs),
            };
            let pos = self.bump()?.start;
            let rhs = self.product()?;
            lhs = self.binary(op, lhs, rhs, pos)?;
        }
    }

    fn product(&mut self) -> Result<Expr> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek()?.tok {
                Tok::Sym(Sym::Star) => BinOp::Mul,
                Tok::Sym(Sym::Slash) => BinOp::Div,
                Tok::Sym(Sym::Percent) => BinOp::Mod,
                _ => return Ok(lhs),
            };
            let pos = self.bump()?.start;
            let rhs = self.unary()?;
            lhs = self.binary(op, lhs, rhs, pos)?;
        }
    }

    /// `-` operand. Minus signs are gathered in a loop (no recursion); the innermost one turns a number or duration
    /// literal right after it into a negative literal.
    fn unary(&mut self) -> Result<Expr> {
        let mut minus = Vec::new();
        while self.is_sym(Sym::Minus)? {
            let pos = self.bump()?.start;
            self.count_operator(pos)?;
            minus.push(pos);
        }
        let mut expr = match minus.last() {
            Some(&pos) => match self.negative_literal(pos)? {
                Some(literal) => {
                    minus.pop();
                    literal
                }
                None => self.primary()?,
            },
            None => self.primary()?,
        };
        for pos in minus.into_iter().rev() {
            expr = Expr::Neg { expr: Box::new(expr), pos };
        }
        Ok(expr)
    }

    /// If a number or duration literal comes next, consumes it and returns it negated (the `-` was at `pos`).
    fn negative_literal(&mut self, pos: usize) -> Result<Option<Expr>> {
        let token = self.peek()?.clone();
        let expr = match token.tok {
            Tok::Int(v) => match i64::try_from(-i128::from(v)) {
                Ok(value) => Expr::Integer { value, pos },
                Err(_) => return Err(ParseError::new(pos, format!("integer -{v} is out of range"))),
            },
            Tok::Num(v) => Expr::Number { value: -v, pos },
            Tok::Dur(nanos) => duration(-nanos, pos),
            _ => return Ok(None),
        };
        self.bump()?;
        Ok(Some(expr))
    }

    fn primary(&mut self) -> Result<Expr> {
        if self.at_regex() {
            let (re, pos) = self.regex()?;
            return Ok(Expr::Regex { re, pos });
        }
        let token = self.peek()?.clone();
        let pos = token.start;
        match token.tok {
            Tok::Sym(Sym::LParen) => {
                self.bump()?;
                let inner = self.expr()?;
                self.expect_sym(Sym::RParen, "\")\"")?;
                Ok(inner)
            }
            Tok::Sym(Sym::Star) => {
                self.bump()?;
                Ok(Expr::Wildcard { pos })
            }
            Tok::Int(v) => match i64::try_from(v) {
                Ok(value) => {
                    self.bump()?;
                    Ok(Expr::Integer { value, pos })
                }
                Err(_) => Err(ParseError::new(pos, format!("integer {v} is out of range"))),
            },
            Tok::Num(value) => {
                self.bump()?;
                Ok(Expr::Number { value, pos })
            }
            Tok::Dur(nanos) => {
                self.bump()?;
                Ok(duration(nanos, pos))
            }
            Tok::Str(value) => {
                self.bump()?;
                Ok(Expr::Str { value, pos })
            }
            Tok::Quoted(name) => {
                self.bump()?;
                self.ident(name, pos)
            }
            Tok::Ident(word) if !is_reserved(&word) => {
                self.bump()?;
                if word.eq_ignore_ascii_case("true") || word.eq_ignore_ascii_case("false") {
                    return Ok(Expr::Bool { value: word.eq_ignore_ascii_case("true"), pos });
                }
                if self.is_sym(Sym::LParen)? {
                    return self.call(word, pos);
                }
                if word.eq_ignore_ascii_case("distinct") && self.name_follows()? {
                    // InfluxQL's `DISTINCT field` is `distinct(field)`.
                    let (field, field_pos) = self.name("a field name")?;
                    let arg = self.ident(field, field_pos)?;
                    return Ok(Expr::Call { name: "distinct".to_string(), args: vec![arg], pos });
                }
                self.ident(word, pos)
            }
            _ => Err(self.expected("an expression")),
        }
    }

    /// An identifier already consumed, with its optional `::tag` / `::field` cast.
    fn ident(&mut self, name: String, pos: usize) -> Result<Expr> {
        let mut kind = IdentKind::Any;
        if self.eat_sym(Sym::DoubleColon)? {
            kind = if self.eat_kw("tag")? {
                IdentKind::Tag
            } else if self.eat_kw("field")? {
                IdentKind::Field
            } else {
                return Err(self.expected("tag or field after \"::\""));
            };
        }
        Ok(Expr::Ident { name, kind, pos })
    }

    /// A function call whose name (at `pos`) was consumed; `(` comes next.
    fn call(&mut self, name: String, pos: usize) -> Result<Expr> {
        self.expect_sym(Sym::LParen, "\"(\"")?;
        let mut args = Vec::new();
        if !self.eat_sym(Sym::RParen)? {
            loop {
                args.push(self.expr()?);
                if self.eat_sym(Sym::Comma)? {
                    continue;
                }
                self.expect_sym(Sym::RParen, "\",\" or \")\"")?;
                break;
            }
        }
        let name = name.to_ascii_lowercase();
        if name == "now" {
            if let Some(arg) = args.first() {
                return Err(ParseError::new(arg.pos(), "now() takes no arguments"));
            }
            return Ok(Expr::Now { pos });
        }
        Ok(Expr::Call { name, args, pos })
    }
}

/// Converts a GROUP BY duration to whole milliseconds, refusing sub-millisecond remainders.
fn whole_ms(nanos: i128, pos: usize, what: &str) -> Result<i64> {
    if nanos % NANOS_PER_MS != 0 {
        return Err(ParseError::new(pos, format!("the {what} must be a whole number of milliseconds")));
    }
    i64::try_from(nanos / NANOS_PER_MS).map_err(|_| ParseError::new(pos, format!("the {what} is out of range")))
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
