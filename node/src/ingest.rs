//! One ingest path. Points arrive as line protocol (HTTP `/write` and `/api/v2/write`, gRPC `Write`, plain TCP
//! and UDP), as structured points (gRPC `Write`, Prometheus remote write, scraping, recording rules and the
//! `ALERTS` series), and all of them end here:
//!
//! ```text
//!  line protocol ──► line_protocol::parse_into (checks the limits as it reads) ──┐
//!  structured points ──► check (Limits::check: names, tags, fields, future bound) ┴─► ingest
//!        ──► write::write_points (split by shard, each part to its leader, replicated)
//!        ──► pharos_write_requests_total{protocol, code} and the explanation of refused samples
//! ```
//!
//! Each front end then answers in its own terms (HTTP status, gRPC status, a log line for TCP, UDP, scraping
//! and rules), from the same [`Ingested`] or [`WriteError`].

use std::sync::Arc;

use pharos_storage::line_protocol::PointError;
use pharos_storage::{Point, Precision};

use crate::config::Config;
use crate::error::WriteError;
use crate::metrics::Metrics;
use crate::write::{WriteOutcome, Writes};

/// Where a request came from: the `protocol` label of `pharos_write_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Http,
    RemoteWrite,
    Grpc,
    Tcp,
    Udp,
    Scrape,
    Rule,
    /// The audit trail of admin changes.
    Audit,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::RemoteWrite => "remote_write",
            Source::Grpc => "grpc",
            Source::Tcp => "tcp",
            Source::Udp => "udp",
            Source::Scrape => "scrape",
            Source::Rule => "rule",
            Source::Audit => "audit",
        }
    }
}

/// One request's points and what the caller already knows about it.
pub struct Batch {
    pub source: Source,
    /// The unit a line-protocol sender chose for its timestamps, to explain refused samples whose timestamps
    /// read as current times in another unit; `None` for structured points (always milliseconds).
    pub precision: Option<Precision>,
    pub points: Vec<Point>,
    /// The request went on with input that was refused after these points (line protocol writes the lines
    /// before a bad one): counted as `invalid_argument` whatever the write's outcome.
    pub then_invalid: bool,
}

/// What a request wrote.
#[derive(Debug)]
pub struct Ingested {
    pub outcome: WriteOutcome,
    /// Why some samples were dropped at apply (older than the out-of-order window or the raw retention),
    /// for the client; `None` when every sample was written.
    pub refusal: Option<String>,
}

/// The one ingest path of a node.
pub struct Ingest {
    pub writes: Arc<Writes>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
}

impl Ingest {
    pub fn new(writes: Arc<Writes>, config: Arc<Config>, metrics: Arc<Metrics>) -> Ingest {
        Ingest { writes, config, metrics }
    }

    /// Checks structured points against the node's limits; on the first bad one, its index and why.
    pub fn check(&self, points: &[Point]) -> Result<(), (usize, PointError)> {
        self.config.limits.check_points(points, crate::clock::now_ms())
    }

    /// Writes a request's points and reports it: counted by source and outcome, refused samples explained.
    pub async fn ingest(&self, batch: Batch) -> Result<Ingested, WriteError> {
        // Only a line-protocol sender chose a unit that could be the wrong one.
        let sent_as = batch.precision.and_then(|p| Some((p, batch.points.iter().map(|x| x.timestamp).min()?)));
        let res = self.writes.write_points(batch.points).await.map(|outcome| {
            let refusal = outcome.refusal(&self.config, sent_as);
            Ingested { outcome, refusal }
        });
        let code = match &res {
            _ if batch.then_invalid => "invalid_argument",
            Err(e) => e.code(),
            Ok(i) if i.refusal.is_some() => "partial",
            Ok(_) => "ok",
        };
        self.metrics.write_requests.with_label_values(&[batch.source.label(), code]).inc();
        res
    }

    /// Counts a request refused before anything of it was written (it does not parse, it breaks a limit, it
    /// is too large: `code` as [`WriteError::code`] names it).
    pub fn count_refused(&self, source: Source, code: &str) {
        self.metrics.write_requests.with_label_values(&[source.label(), code]).inc();
    }
}
