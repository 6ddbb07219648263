//! The syntax tree of the query language (InfluxQL's shape, see docs/query.md).
//!
//! The parser ([`crate::parser`]) produces it; the planner ([`crate::plan`]) checks what the parser cannot
//! (aggregates mixed with raw fields, conditions on fields) and turns a [`Select`] into shard requests.
//! Every node that the planner may complain about carries `pos`, the byte offset in the query text, so its
//! errors can point at the source like the parser's do.

use regex::Regex;

/// One statement; a query text holds one or more separated by `;`.
#[derive(Debug, Clone)]
pub enum Statement {
    Select(Box<Select>),
    /// `SHOW MEASUREMENTS [WITH MEASUREMENT =~ /re/ | = name] [WHERE cond] [LIMIT n] [OFFSET n]`
    ShowMeasurements {
        with: Option<NameMatch>,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    /// `SHOW TAG KEYS [FROM sources] [WHERE cond] [LIMIT n] [OFFSET n]`
    ShowTagKeys {
        from: Vec<Source>,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    /// `SHOW TAG VALUES [FROM sources] WITH KEY (= k | IN (k1, k2) | =~ /re/ | != k | !~ /re/) [WHERE cond]
    /// [LIMIT n] [OFFSET n]`
    ShowTagValues {
        from: Vec<Source>,
        key: NameMatch,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    /// `SHOW FIELD KEYS [FROM sources]`
    ShowFieldKeys {
        from: Vec<Source>,
    },
    /// `SHOW SERIES CARDINALITY [FROM sources] [WHERE cond]`
    ShowSeriesCardinality {
        from: Vec<Source>,
        condition: Option<Expr>,
    },
    /// `SHOW SERIES [FROM sources] [WHERE cond] [LIMIT n] [OFFSET n]`
    ShowSeries {
        from: Vec<Source>,
        condition: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    /// `SHOW DATABASES` (Grafana's InfluxDB data source and the influx CLI ask; there is one, `pharos`).
    ShowDatabases,
    /// `SHOW RETENTION POLICIES [ON db]`
    ShowRetentionPolicies,
}

/// How a name (measurement or tag key) is chosen.
#[derive(Debug, Clone)]
pub enum NameMatch {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    Re(Regex),
    NotRe(Regex),
}

impl NameMatch {
    pub fn matches(&self, s: &str) -> bool {
        match self {
            NameMatch::Eq(x) => s == x,
            NameMatch::Ne(x) => s != x,
            NameMatch::In(xs) => xs.iter().any(|x| x == s),
            NameMatch::Re(r) => r.is_match(s),
            NameMatch::NotRe(r) => !r.is_match(s),
        }
    }
}

/// One entry of a FROM clause. `"db"."rp"."m"` and `db..m` parse; database and retention policy are ignored
/// (Pharos has one database; retention is per measurement, see docs/ARCHITECTURE.md).
#[derive(Debug, Clone)]
pub enum Source {
    Name(String),
    Regex(Regex),
}

impl Source {
    pub fn matches(&self, measurement: &str) -> bool {
        match self {
            Source::Name(n) => n == measurement,
            Source::Regex(r) => r.is_match(measurement),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Select {
    pub fields: Vec<Field>,
    pub from: Vec<Source>,
    /// The whole WHERE expression; the planner splits time bounds from tag conditions.
    pub condition: Option<Expr>,
    pub group_by: GroupBy,
    pub fill: Fill,
    /// `ORDER BY time DESC`; `ORDER BY time ASC` (the default) leaves it false.
    pub order_desc: bool,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub slimit: Option<u64>,
    pub soffset: Option<u64>,
    /// `HAVING expr`: keeps the rows for which it holds (used by alert rules).
    pub having: Option<Expr>,
    /// `tz('Europe/Paris')` is parsed and refused by the planner (not supported yet).
    pub tz: Option<String>,
}

/// One projection: `expr [AS alias]`.
#[derive(Debug, Clone)]
pub struct Field {
    pub expr: Expr,
    pub alias: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct GroupBy {
    /// `time(interval[, offset])`, both in milliseconds; the offset may be negative (`-15m`).
    pub time: Option<TimeGroup>,
    pub tags: TagGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeGroup {
    pub interval_ms: i64,
    pub offset_ms: i64,
    pub pos: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TagGroup {
    #[default]
    None,
    Tags(Vec<String>),
    /// `GROUP BY *`
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fill {
    /// Empty buckets appear with null values (InfluxQL's default).
    #[default]
    Null,
    /// Empty buckets are left out.
    None,
    Previous,
    Linear,
    Value(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `=~` (the right side is a [`Expr::Regex`])
    ReMatch,
    /// `!~`
    ReNotMatch,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Eq => "=",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::ReMatch => "=~",
            BinOp::ReNotMatch => "!~",
            BinOp::And => "AND",
            BinOp::Or => "OR",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Expr {
    /// A field, a tag, or `time`. Quoted identifiers (`"my field"`) arrive unquoted. `field::tag` and
    /// `field::field` casts set `kind`.
    Ident {
        name: String,
        kind: IdentKind,
        pos: usize,
    },
    /// `*` in a projection (all fields) or as an argument (`mean(*)`).
    Wildcard {
        pos: usize,
    },
    Number {
        value: f64,
        pos: usize,
    },
    /// Integer literals keep their exact value (epoch timestamps in nanoseconds do not fit an f64).
    Integer {
        value: i64,
        pos: usize,
    },
    /// A single-quoted string (`'us-west'`, `'2024-01-01T00:00:00Z'`).
    Str {
        value: String,
        pos: usize,
    },
    /// `10s`, `1h30m`, `500ms`, `2w`, `1u`/`1µ`, `100ns`: milliseconds (sub-millisecond units truncate toward zero;
    /// the exact nanoseconds are kept in `nanos` for epoch comparisons like `time > 1700000000000000000ns`).
    Duration {
        ms: i64,
        nanos: i128,
        pos: usize,
    },
    /// `/regex/` with InfluxQL escaping (`\/` for a slash).
    Regex {
        re: Regex,
        pos: usize,
    },
    /// `now()`
    Now {
        pos: usize,
    },
    Call {
        name: String,
        args: Vec<Expr>,
        pos: usize,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        pos: usize,
    },
    /// `-x` (a negative number literal parses to a negative [`Expr::Number`]/[`Expr::Integer`] instead).
    Neg {
        expr: Box<Expr>,
        pos: usize,
    },
    /// A boolean literal `true`/`false`.
    Bool {
        value: bool,
        pos: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentKind {
    #[default]
    Any,
    Tag,
    Field,
}

impl Expr {
    /// Byte offset of this expression in the query text.
    pub fn pos(&self) -> usize {
        match self {
            Expr::Ident { pos, .. }
            | Expr::Wildcard { pos }
            | Expr::Number { pos, .. }
            | Expr::Integer { pos, .. }
            | Expr::Str { pos, .. }
            | Expr::Duration { pos, .. }
            | Expr::Regex { pos, .. }
            | Expr::Now { pos }
            | Expr::Call { pos, .. }
            | Expr::Binary { pos, .. }
            | Expr::Neg { pos, .. }
            | Expr::Bool { pos, .. } => *pos,
        }
    }
}
