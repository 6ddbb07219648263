//! The Pharos query language, close to InfluxQL (docs/query.md): parsing, planning, the per-shard part of
//! execution (next to the data) and the coordinator's merge.
//!
//! ```text
//! text ──parser──► ast::Statement ──plan──► plan::Plan ──► shard::ShardQuery (one per shard, in parallel)
//!                                                              │ shard::run over a ShardEngine: partial
//!                                                              ▼ aggregates per group and bucket, or raw series
//!                  result::Series ◄──exec::finish (merge, final aggregates, window functions, fill, order, limits)
//! ```
//! [`cache`] keeps shards' answers of whole buckets for dashboards that repeat a query.
//! The node (pharos-node) sends the shard queries to the shards' leaders over gRPC; [`run_local`] runs a
//! query over engines in this process (tests, tools).

pub mod ast;
pub mod cache;
pub mod error;
pub mod exec;
pub mod parser;
pub mod plan;
pub mod result;
pub mod shard;
pub mod stream;

pub use error::{ParseError, QueryError};
pub use parser::parse;
pub use plan::{plan, Limits, Plan, PlanOptions};
pub use result::{Epoch, Series, StatementResult, Value};

use pharos_storage::ShardEngine;

/// Runs every statement of `text` over the given shards (engines in this process), as the coordinator
/// would over the cluster. A statement's error is reported in its result; a parse error fails them all.
pub fn run_local(engines: &[&ShardEngine], text: &str, opts: &PlanOptions) -> Result<Vec<StatementResult>, QueryError> {
    let statements = parse(text)?;
    Ok(statements
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let res = plan(st, opts).and_then(|p| {
                let answers = match p.shard_query() {
                    Some(q) => engines.iter().map(|e| shard::run(e, &q)).collect::<Result<Vec<_>, _>>()?,
                    None => vec![],
                };
                exec::finish(&p, answers)
            });
            match res {
                Ok(series) => StatementResult { statement_id: i, series, error: None },
                Err(e) => StatementResult { statement_id: i, series: vec![], error: Some(e.render(text)) },
            }
        })
        .collect())
}
