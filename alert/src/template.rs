//! Annotation and label templates: the part of Go's `text/template` that Prometheus rules use.
//!
//! ```text
//! {{ $labels.instance }} is down ({{ $value }})        labels and the value; a missing label renders as ""
//! {{ .Labels.instance }} {{ .Value }}                  the same through the data's fields
//! {{ humanize $value }}  {{ $value | humanize }}       1500 -> 1.5k (also humanize1024, humanizePercentage,
//!                                                      humanizeDuration)
//! {{ printf "%.2f" $value }}                           Go's printf verbs (see [`crate::gofmt::sprintf`])
//! {{ toUpper $labels.env }} {{ index $labels "a-b" }}  toUpper, toLower, title, index
//! {{ $externalLabels.cluster }} {{ $externalURL }}     the node's external labels and URL
//! {{- trims -}} {{/* comments */}} ( parentheses )
//! ```
//!
//! Everything that can be checked without data is checked by [`Template::parse`] when the rule file loads:
//! unterminated `{{`, unknown functions and variables, argument counts, control structures (`if`, `range`,
//! ... are not supported). What depends on data (`humanize "abc"`) fails in [`Template::render`];
//! [`Template::expand`] writes such an error into the text as Prometheus does.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::gofmt::{format_g, sprintf, Arg};
use crate::labels::Labels;

/// A template that failed to parse or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
}

fn err<T>(message: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError { message: message.into() })
}

/// What a template can see.
#[derive(Debug, Clone, Copy)]
pub struct TemplateData<'a> {
    /// `$labels`: the labels of the query row (its GROUP BY tags).
    pub labels: &'a Labels,
    /// `$value`
    pub value: f64,
    /// `$externalLabels`
    pub external_labels: &'a Labels,
    /// `$externalURL`
    pub external_url: &'a str,
}

static NO_LABELS: Labels = Labels::new();

impl<'a> TemplateData<'a> {
    /// Labels and value, with no external labels or URL.
    pub fn new(labels: &'a Labels, value: f64) -> TemplateData<'a> {
        TemplateData { labels, value, external_labels: &NO_LABELS, external_url: "" }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    Printf,
    ToUpper,
    ToLower,
    Title,
    Index,
}

impl Func {
    fn by_name(name: &str) -> Option<Func> {
        Some(match name {
            "humanize" => Func::Humanize,
            "humanize1024" => Func::Humanize1024,
            "humanizePercentage" => Func::HumanizePercentage,
            "humanizeDuration" => Func::HumanizeDuration,
            "printf" => Func::Printf,
            "toUpper" => Func::ToUpper,
            "toLower" => Func::ToLower,
            "title" => Func::Title,
            "index" => Func::Index,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Func::Humanize => "humanize",
            Func::Humanize1024 => "humanize1024",
            Func::HumanizePercentage => "humanizePercentage",
            Func::HumanizeDuration => "humanizeDuration",
            Func::Printf => "printf",
            Func::ToUpper => "toUpper",
            Func::ToLower => "toLower",
            Func::Title => "title",
            Func::Index => "index",
        }
    }

    /// Argument count: exact, or at least (printf).
    fn arity(self) -> (usize, bool) {
        match self {
            Func::Printf => (1, true),
            Func::Index => (2, false),
            _ => (1, false),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Labels,
    Label(String),
    ExternalLabels,
    ExternalLabel(String),
    ExternalUrl,
    Value,
    Str(String),
    Num(f64),
    Paren(Pipeline),
}

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Call(Func, Vec<Operand>),
    Operand(Operand),
}

#[derive(Debug, Clone, PartialEq)]
struct Pipeline(Vec<Command>);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
}

/// A parsed template; it serializes as its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
}

impl Template {
    /// Parses and checks a template (see the module docs for what is checked).
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        Ok(Template { source: source.to_string(), nodes: parse_nodes(source)? })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template; an error names what failed (`humanize: "abc" is not a number`).
    pub fn render(&self, data: &TemplateData) -> Result<String, TemplateError> {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => out.push_str(&eval_pipeline(p, data)?.print()),
            }
        }
        Ok(out)
    }

    /// Renders the template, or on error `<error expanding template: ...>` as Prometheus writes it.
    pub fn expand(&self, data: &TemplateData) -> String {
        self.render(data).unwrap_or_else(|e| format!("<error expanding template: {e}>"))
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Template::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

// ---- parsing ----

fn parse_nodes(src: &str) -> Result<Vec<Node>, TemplateError> {
    let mut nodes = Vec::new();
    let mut rest = 0; // byte offset of unparsed text
    let mut trim_next_text = false;
    while rest <= src.len() {
        let Some(open) = src[rest..].find("{{").map(|i| rest + i) else {
            push_text(&mut nodes, &src[rest..], trim_next_text, false);
            break;
        };
        let mut start = open + 2;
        let after = &src[start..];
        let trim_left = after.starts_with('-') && after[1..].starts_with(|c: char| c.is_ascii_whitespace());
        if trim_left {
            start += 1;
        }
        push_text(&mut nodes, &src[rest..open], trim_next_text, trim_left);
        let close = find_close(src, start).ok_or_else(|| TemplateError {
            message: format!("unclosed action: \"{{{{\" at offset {open} has no matching \"}}}}\""),
        })?;
        let mut inner = &src[start..close];
        let trim_right = inner.ends_with('-') && inner[..inner.len() - 1].ends_with(|c: char| c.is_ascii_whitespace());
        if trim_right {
            inner = &inner[..inner.len() - 1];
        }
        trim_next_text = trim_right;
        rest = close + 2;
        let body = inner.trim();
        if let Some(c) = body.strip_prefix("/*") {
            if !c.ends_with("*/") {
                return err(format!("unclosed comment at offset {open}"));
            }
            continue;
        }
        let tokens = lex(inner, start)?;
        if tokens.is_empty() {
            return err(format!("missing value for command at offset {open}"));
        }
        let mut p = TokenStream { tokens, i: 0 };
        let pipe = p.pipeline()?;
        if let Some(t) = p.peek() {
            return err(format!("unexpected {} at offset {}", t.tok.describe(), t.pos));
        }
        nodes.push(Node::Action(pipe));
    }
    Ok(nodes)
}

fn push_text(nodes: &mut Vec<Node>, text: &str, trim_start: bool, trim_end: bool) {
    let mut t = text;
    if trim_start {
        t = t.trim_start();
    }
    if trim_end {
        t = t.trim_end();
    }
    if !t.is_empty() {
        nodes.push(Node::Text(t.to_string()));
    }
}

/// The offset of the `}}` closing the action that starts at `from`, skipping quoted strings.
fn find_close(src: &str, from: usize) -> Option<usize> {
    let b = src.as_bytes();
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Var(String),
    /// `.Labels.x` as ["Labels", "x"]; a bare `.` is an empty path.
    Field(Vec<String>),
    Ident(String),
    Str(String),
    Num(f64),
    Pipe,
    LParen,
    RParen,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Var(v) => format!("variable {v}"),
            Tok::Field(f) => format!("field .{}", f.join(".")),
            Tok::Ident(i) => format!("identifier {i:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Num(n) => format!("number {}", format_g(*n, None)),
            Tok::Pipe => "\"|\"".into(),
            Tok::LParen => "\"(\"".into(),
            Tok::RParen => "\")\"".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn lex(s: &str, base: usize) -> Result<Vec<Token>, TemplateError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    let at = |i: usize| chars.get(i).map(|c| c.1);
    let off = |i: usize| base + chars.get(i).map(|c| c.0).unwrap_or(s.len());
    while i < chars.len() {
        let c = chars[i].1;
        let pos = off(i);
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '|' => {
                i += 1;
                Tok::Pipe
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '"' => {
                i += 1;
                let mut v = String::new();
                loop {
                    match at(i) {
                        None => return err(format!("unterminated quoted string at offset {pos}")),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let e = at(i + 1).ok_or_else(|| TemplateError {
                                message: format!("unterminated quoted string at offset {pos}"),
                            })?;
                            v.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '"' => '"',
                                '\\' => '\\',
                                '\'' => '\'',
                                other => return err(format!("unknown escape \\{other} in string at offset {pos}")),
                            });
                            i += 2;
                        }
                        Some(c) => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                Tok::Str(v)
            }
            '`' => {
                i += 1;
                let mut v = String::new();
                loop {
                    match at(i) {
                        None => return err(format!("unterminated raw string at offset {pos}")),
                        Some('`') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                Tok::Str(v)
            }
            '$' | '.' => {
                let mut j = i + 1;
                while at(j).is_some_and(|c| is_word(c) || c == '.') {
                    j += 1;
                }
                let word: String = chars[i..j].iter().map(|c| c.1).collect();
                if c == '.' && word.len() > 1 && word[1..].starts_with(|c: char| c.is_ascii_digit()) {
                    return err(format!("bad number syntax {word:?} at offset {pos}"));
                }
                i = j;
                if c == '$' {
                    Tok::Var(word)
                } else {
                    let path = &word[1..];
                    Tok::Field(if path.is_empty() { vec![] } else { path.split('.').map(String::from).collect() })
                }
            }
            c if c.is_ascii_digit() || ((c == '-' || c == '+') && at(i + 1).is_some_and(|d| d.is_ascii_digit())) => {
                let mut j = i + 1;
                while let Some(d) = at(j) {
                    let exp_sign = (d == '+' || d == '-') && matches!(at(j - 1), Some('e' | 'E'));
                    if d.is_ascii_alphanumeric() || d == '.' || d == '_' || exp_sign {
                        j += 1;
                    } else {
                        break;
                    }
                }
                let word: String = chars[i..j].iter().map(|c| c.1).filter(|c| *c != '_').collect();
                i = j;
                match word.parse::<f64>() {
                    Ok(v) if v.is_finite() => Tok::Num(v),
                    _ => return err(format!("bad number syntax {word:?} at offset {pos}")),
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while at(j).is_some_and(is_word) {
                    j += 1;
                }
                let word: String = chars[i..j].iter().map(|c| c.1).collect();
                i = j;
                Tok::Ident(word)
            }
            other => return err(format!("unexpected {other:?} at offset {pos}")),
        };
        out.push(Token { tok, pos });
    }
    Ok(out)
}

struct TokenStream {
    tokens: Vec<Token>,
    i: usize,
}

const KEYWORDS: [&str; 10] = ["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"];

impl TokenStream {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.i)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.i).cloned();
        self.i += 1;
        t
    }

    /// command ('|' command)*
    fn pipeline(&mut self) -> Result<Pipeline, TemplateError> {
        let mut cmds = vec![self.command(false)?];
        while matches!(self.peek(), Some(Token { tok: Tok::Pipe, .. })) {
            self.next();
            cmds.push(self.command(true)?);
        }
        Ok(Pipeline(cmds))
    }

    fn at_command_end(&self) -> bool {
        matches!(self.peek(), None | Some(Token { tok: Tok::Pipe | Tok::RParen, .. }))
    }

    fn command(&mut self, piped: bool) -> Result<Command, TemplateError> {
        let Some(first) = self.peek().cloned() else { return err("missing command after \"|\"") };
        if let Tok::Ident(name) = &first.tok {
            self.next();
            if KEYWORDS.contains(&name.as_str()) {
                return err(format!(
                    "{{{{{name}}}}} at offset {} is not supported in alert templates (only values, functions and pipelines)",
                    first.pos
                ));
            }
            if name == "true" || name == "false" || name == "nil" {
                return err(format!("{name} is not supported at offset {}", first.pos));
            }
            let Some(func) = Func::by_name(name) else {
                return err(format!("function {name:?} not defined (at offset {})", first.pos));
            };
            let mut args = Vec::new();
            while !self.at_command_end() {
                args.push(self.operand()?);
            }
            let given = args.len() + usize::from(piped);
            let (want, at_least) = func.arity();
            if given < want || (!at_least && given > want) {
                return err(format!(
                    "wrong number of args for {}: want {}{want} got {given}",
                    func.name(),
                    if at_least { "at least " } else { "" }
                ));
            }
            return Ok(Command::Call(func, args));
        }
        let op = self.operand()?;
        if piped {
            return err(format!("non executable command in pipeline at offset {}", first.pos));
        }
        if !self.at_command_end() {
            let t = self.peek().expect("not at end");
            return err(format!("can't give argument to non-function at offset {}", t.pos));
        }
        Ok(Command::Operand(op))
    }

    fn operand(&mut self) -> Result<Operand, TemplateError> {
        let Some(t) = self.next() else { return err("missing operand") };
        Ok(match t.tok {
            Tok::Str(s) => Operand::Str(s),
            Tok::Num(n) => Operand::Num(n),
            Tok::LParen => {
                let p = self.pipeline()?;
                match self.next() {
                    Some(Token { tok: Tok::RParen, .. }) => Operand::Paren(p),
                    _ => return err(format!("unclosed left paren at offset {}", t.pos)),
                }
            }
            Tok::Var(v) => variable(&v, t.pos)?,
            Tok::Field(path) => field(&path, t.pos)?,
            Tok::Ident(name) => {
                return err(format!(
                    "function {name:?} at offset {} needs parentheses to be used as an argument",
                    t.pos
                ))
            }
            other => return err(format!("unexpected {} at offset {}", other.describe(), t.pos)),
        })
    }
}

fn variable(v: &str, pos: usize) -> Result<Operand, TemplateError> {
    let (name, path) = match v.split_once('.') {
        Some((n, p)) => (n, Some(p)),
        None => (v, None),
    };
    match (name, path) {
        ("$labels", None) => Ok(Operand::Labels),
        ("$labels", Some(k)) => label_key(k, pos).map(Operand::Label),
        ("$externalLabels", None) => Ok(Operand::ExternalLabels),
        ("$externalLabels", Some(k)) => label_key(k, pos).map(Operand::ExternalLabel),
        ("$value", None) => Ok(Operand::Value),
        ("$externalURL", None) => Ok(Operand::ExternalUrl),
        ("$", Some(p)) => field(&p.split('.').map(String::from).collect::<Vec<_>>(), pos),
        ("$value" | "$externalURL", Some(_)) => err(format!("{name} has no fields (at offset {pos})")),
        _ => err(format!("undefined variable {name:?} at offset {pos}")),
    }
}

fn label_key(k: &str, pos: usize) -> Result<String, TemplateError> {
    if k.is_empty() || k.contains('.') {
        return err(format!("bad label reference {k:?} at offset {pos}"));
    }
    Ok(k.to_string())
}

fn field(path: &[String], pos: usize) -> Result<Operand, TemplateError> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["Labels"] => Ok(Operand::Labels),
        ["Labels", k] => Ok(Operand::Label(k.to_string())),
        ["ExternalLabels"] => Ok(Operand::ExternalLabels),
        ["ExternalLabels", k] => Ok(Operand::ExternalLabel(k.to_string())),
        ["Value"] => Ok(Operand::Value),
        ["ExternalURL"] => Ok(Operand::ExternalUrl),
        _ => err(format!("can't evaluate field .{} at offset {pos}", p.join("."))),
    }
}

// ---- rendering ----

enum Val<'a> {
    Arg(Arg),
    Map(&'a Labels),
}

impl Val<'_> {
    fn print(&self) -> String {
        match self {
            Val::Arg(a) => a.render(),
            Val::Map(m) => {
                let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", pairs.join(" "))
            }
        }
    }
}

fn eval_operand<'a>(op: &Operand, d: &TemplateData<'a>) -> Result<Val<'a>, TemplateError> {
    Ok(match op {
        Operand::Labels => Val::Map(d.labels),
        Operand::Label(k) => Val::Arg(Arg::Str(d.labels.get(k).cloned().unwrap_or_default())),
        Operand::ExternalLabels => Val::Map(d.external_labels),
        Operand::ExternalLabel(k) => Val::Arg(Arg::Str(d.external_labels.get(k).cloned().unwrap_or_default())),
        Operand::ExternalUrl => Val::Arg(Arg::Str(d.external_url.to_string())),
        Operand::Value => Val::Arg(Arg::Num(d.value)),
        Operand::Str(s) => Val::Arg(Arg::Str(s.clone())),
        Operand::Num(n) => Val::Arg(Arg::Num(*n)),
        Operand::Paren(p) => eval_pipeline(p, d)?,
    })
}

fn eval_pipeline<'a>(p: &Pipeline, d: &TemplateData<'a>) -> Result<Val<'a>, TemplateError> {
    let mut piped: Option<Val<'a>> = None;
    for cmd in &p.0 {
        piped = Some(match cmd {
            Command::Operand(op) => eval_operand(op, d)?,
            Command::Call(f, args) => {
                let mut vals = args.iter().map(|a| eval_operand(a, d)).collect::<Result<Vec<_>, _>>()?;
                vals.extend(piped.take());
                call(*f, vals)?
            }
        });
    }
    Ok(piped.expect("a pipeline has a command"))
}

fn to_float(f: Func, v: &Val) -> Result<f64, TemplateError> {
    match v {
        Val::Arg(Arg::Num(n)) => Ok(*n),
        Val::Arg(Arg::Str(s)) => {
            let t = s.trim();
            let parsed = match t {
                "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
                "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
                _ => t.parse::<f64>(),
            };
            parsed.or_else(|_| err(format!("{}: {s:?} is not a number", f.name())))
        }
        Val::Map(_) => err(format!("{}: a label map is not a number", f.name())),
    }
}

fn to_str(f: Func, v: &Val) -> Result<String, TemplateError> {
    match v {
        Val::Arg(Arg::Str(s)) => Ok(s.clone()),
        Val::Arg(Arg::Num(_)) => err(format!("{}: wrong type for value; expected string; got float64", f.name())),
        Val::Map(_) => err(format!("{}: wrong type for value; expected string; got map", f.name())),
    }
}

fn call<'a>(f: Func, args: Vec<Val<'a>>) -> Result<Val<'a>, TemplateError> {
    let s = |x: String| Ok(Val::Arg(Arg::Str(x)));
    match f {
        Func::Humanize => s(humanize(to_float(f, &args[0])?)),
        Func::Humanize1024 => s(humanize1024(to_float(f, &args[0])?)),
        Func::HumanizePercentage => s(humanize_percentage(to_float(f, &args[0])?)),
        Func::HumanizeDuration => s(humanize_duration(to_float(f, &args[0])?)),
        Func::ToUpper => s(to_str(f, &args[0])?.to_uppercase()),
        Func::ToLower => s(to_str(f, &args[0])?.to_lowercase()),
        Func::Title => s(title(&to_str(f, &args[0])?)),
        Func::Printf => {
            let format = to_str(f, &args[0])?;
            let rest = args[1..]
                .iter()
                .map(|v| match v {
                    Val::Arg(a) => Ok(a.clone()),
                    Val::Map(m) => Ok(Arg::Str(Val::Map(m).print())),
                })
                .collect::<Result<Vec<_>, TemplateError>>()?;
            s(sprintf(&format, &rest))
        }
        Func::Index => match (&args[0], &args[1]) {
            (Val::Map(m), Val::Arg(Arg::Str(k))) => s(m.get(k).cloned().unwrap_or_default()),
            (Val::Map(_), _) => err("index: the key must be a string"),
            _ => err("index: the first argument must be $labels or $externalLabels"),
        },
    }
}

/// Go's `strings.Title`: the first letter of every word in upper case.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits (1500 -> `1.5k`, 0.002 -> `2m`).
pub fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

/// Prometheus's `humanize1024`: binary prefixes (2048 -> `2ki`).
pub fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return format_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

/// Prometheus's `humanizePercentage`: 0.1234 -> `12.34%`.
pub fn humanize_percentage(v: f64) -> String {
    format!("{}%", format_g(v * 100.0, Some(4)))
}

/// Prometheus's `humanizeDuration` over seconds: 90061 -> `1d 1h 1m 1s`, 0.25 -> `250ms`.
pub fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return format_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", format_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let v = v.abs();
        let d = v as i64;
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {hours}h {mins}m {secs}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {mins}m {secs}s")
        } else if mins != 0 {
            format!("{sign}{mins}m {secs}s")
        } else {
            format!("{sign}{}s", format_g(v, Some(4)))
        };
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g(v, Some(4)))
}

#[cfg(test)]
#[path = "template_test.rs"]
mod tests;
