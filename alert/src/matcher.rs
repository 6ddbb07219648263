//! Alertmanager label matchers: `severity="page"`, `team=~"db|infra"`, `env!="dev"`, `job!~"test.*"`.
//!
//! Values may be quoted (with `\"`, `\\` and `\n` escapes) or bare (`severity=page`); one string may hold
//! several, comma-separated and optionally in braces (`{a="1", b=~"x.*"}`). Regexes are anchored at both
//! ends. A missing label matches as the empty string, so `env!="dev"` matches alerts without `env` and
//! `env=""` matches only those.

use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::labels::{is_valid_label_name, quote, Labels};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// One matcher; serializes as its text (`team=~"db|infra"`).
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Matcher) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

/// Why a matcher did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad matcher {text:?}: {why}")]
pub struct MatcherError {
    pub text: String,
    pub why: String,
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, MatcherError> {
        let text = format!("{name}{}{}", op.as_str(), quote(value));
        if !is_valid_label_name(name) {
            return Err(MatcherError { text, why: format!("invalid label name {name:?}") });
        }
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => {
                Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| MatcherError { text, why: e.to_string() })?)
            }
            _ => None,
        };
        Ok(Matcher { name: name.to_string(), op, value: value.to_string(), re })
    }

    /// Whether the label set matches (a missing label is the empty string).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).map(String::as_str).unwrap_or(""))
    }

    pub fn matches_value(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.re.as_ref().expect("compiled").is_match(v),
            MatchOp::NotRe => !self.re.as_ref().expect("compiled").is_match(v),
        }
    }

    /// Parses one matcher.
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        let mut all = parse_matchers(text)?;
        if all.len() != 1 {
            return Err(MatcherError { text: text.into(), why: format!("expected one matcher, found {}", all.len()) });
        }
        Ok(all.remove(0))
    }
}

/// Whether every matcher matches.
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// `{a="1",b=~"x"}`: Alertmanager's rendering of a matcher list (route keys use it).
pub fn format_matchers(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(Matcher::to_string).collect();
    format!("{{{}}}", parts.join(","))
}

/// Parses a comma-separated list of matchers, optionally in braces.
pub fn parse_matchers(text: &str) -> Result<Vec<Matcher>, MatcherError> {
    let bad = |why: &str| MatcherError { text: text.to_string(), why: why.to_string() };
    let mut s = text.trim();
    if let Some(inner) = s.strip_prefix('{') {
        s = inner.strip_suffix('}').ok_or_else(|| bad("missing closing \"}\""))?.trim();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    while i < chars.len() {
        skip_ws(&mut i);
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        if name.is_empty() {
            return Err(bad("expected a label name"));
        }
        skip_ws(&mut i);
        let op = match (chars.get(i), chars.get(i + 1)) {
            (Some('='), Some('~')) => MatchOp::Re,
            (Some('!'), Some('=')) => MatchOp::Ne,
            (Some('!'), Some('~')) => MatchOp::NotRe,
            (Some('='), _) => MatchOp::Eq,
            _ => return Err(bad(&format!("expected =, !=, =~ or !~ after {name:?}"))),
        };
        i += if op == MatchOp::Eq { 1 } else { 2 };
        skip_ws(&mut i);
        let mut value = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(bad("unterminated quoted value")),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some('n') => value.push('\n'),
                            Some('t') => value.push('\t'),
                            Some('"') => value.push('"'),
                            Some('\\') => value.push('\\'),
                            // Regexes keep their own escapes: `a=~"\d+"`.
                            Some(c) => {
                                value.push('\\');
                                value.push(*c);
                            }
                            None => return Err(bad("unterminated quoted value")),
                        }
                        i += 2;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < chars.len() && chars[i] != ',' {
                value.push(chars[i]);
                i += 1;
            }
            value = value.trim().to_string();
            if value.contains('"') {
                return Err(bad("a bare value cannot contain a quote"));
            }
        }
        out.push(Matcher::new(&name, op, &value).map_err(|e| MatcherError { text: text.to_string(), why: e.why })?);
        skip_ws(&mut i);
        match chars.get(i) {
            None => break,
            Some(',') => {
                i += 1;
                skip_ws(&mut i);
                if i == chars.len() {
                    break; // a trailing comma, as Alertmanager accepts
                }
            }
            Some(c) => return Err(bad(&format!("unexpected {c:?} after a matcher"))),
        }
    }
    if out.is_empty() {
        return Err(bad("no matchers"));
    }
    Ok(out)
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.as_str(), quote(&self.value))
    }
}

impl FromStr for Matcher {
    type Err = MatcherError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Matcher::parse(s)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Matcher::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A list of matchers read from YAML/JSON as a list of strings, each holding one or more matchers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Matchers(pub Vec<Matcher>);

impl Serialize for Matchers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Matchers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lines = Vec::<String>::deserialize(d)?;
        let mut out = Vec::new();
        for l in lines {
            out.extend(parse_matchers(&l).map_err(serde::de::Error::custom)?);
        }
        Ok(Matchers(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::labels;

    #[test]
    fn parses_alertmanager_matchers() {
        let cases = [
            ("severity=\"page\"", "severity", MatchOp::Eq, "page"),
            ("team=~\"db|infra\"", "team", MatchOp::Re, "db|infra"),
            ("env!=\"dev\"", "env", MatchOp::Ne, "dev"),
            ("job!~\"test.*\"", "job", MatchOp::NotRe, "test.*"),
            ("severity=page", "severity", MatchOp::Eq, "page"),
            ("  a = \"x y\" ", "a", MatchOp::Eq, "x y"),
            ("a=\"q\\\"uote\\\\\"", "a", MatchOp::Eq, "q\"uote\\"),
            ("a=~\"\\d+\"", "a", MatchOp::Re, "\\d+"),
            ("a=\"\"", "a", MatchOp::Eq, ""),
        ];
        for (text, name, op, value) in cases {
            let m = Matcher::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((m.name.as_str(), m.op, m.value.as_str()), (name, op, value), "{text}");
        }
    }

    #[test]
    fn parses_lists() {
        let ms = parse_matchers("{severity=\"page\", team=~\"db|infra\",}").unwrap();
        assert_eq!(format_matchers(&ms), "{severity=\"page\",team=~\"db|infra\"}");
        let ms = parse_matchers("a=1,b!=2").unwrap();
        assert_eq!(format_matchers(&ms), "{a=\"1\",b!=\"2\"}");
    }

    #[test]
    fn rejects_bad_matchers() {
        let cases = [
            ("", "no matchers"),
            ("severity", "expected =, !=, =~ or !~ after \"severity\""),
            ("=\"x\"", "expected a label name"),
            ("a=\"x", "unterminated quoted value"),
            ("a=~\"(\"", "regex parse error:\n    ^(?:()$\n     ^\nerror: unclosed group"),
            ("{a=\"x\"", "missing closing \"}\""),
            ("a=\"x\" b=\"y\"", "unexpected 'b' after a matcher"),
            ("1a=\"x\"", "invalid label name \"1a\""),
        ];
        for (text, why) in cases {
            assert_eq!(parse_matchers(text).unwrap_err().why, why, "{text}");
        }
        assert_eq!(Matcher::parse("a=1,b=2").unwrap_err().why, "expected one matcher, found 2");
    }

    #[test]
    fn matching_treats_missing_labels_as_empty() {
        let l = labels([("severity", "page"), ("team", "db"), ("job", "test-api")]);
        let cases = [
            ("severity=\"page\"", true),
            ("severity=\"pag\"", false),
            ("team=~\"db|infra\"", true),
            ("team=~\"d\"", false), // anchored
            ("env!=\"dev\"", true), // missing env
            ("env=\"\"", true),
            ("env=~\".+\"", false),
            ("job!~\"test.*\"", false),
            ("job!~\"prod.*\"", true),
        ];
        for (text, want) in cases {
            assert_eq!(Matcher::parse(text).unwrap().matches(&l), want, "{text}");
        }
    }

    #[test]
    fn serde_round_trips_text() {
        let m = Matcher::parse("team=~\"db|infra\"").unwrap();
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, r#""team=~\"db|infra\"""#);
        assert_eq!(serde_json::from_str::<Matcher>(&j).unwrap(), m);
        let ms: Matchers = serde_yaml::from_str("['a=\"1\", b=\"2\"', 'c=~x']").unwrap();
        assert_eq!(format_matchers(&ms.0), "{a=\"1\",b=\"2\",c=~\"x\"}");
    }
}
