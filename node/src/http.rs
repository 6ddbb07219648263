//! HTTP endpoints, InfluxDB 1.x/2.x compatible where a path exists there.
//!
//! | path                 | what                                                                 |
//! |----------------------|----------------------------------------------------------------------|
//! | `POST /write`        | line protocol (`precision=ns|us|ms|s`, gzip allowed); 204 on success |
//! | `POST /api/v2/write` | the same body (InfluxDB 2.x clients, Telegraf's influxdb_v2 output)  |
//! | `POST /api/v1/write` | Prometheus remote write (snappy protobuf); 204, 400 naming the bad series |
//! | `GET/POST /query`    | the query language; InfluxDB 1.x parameters (`q`, `db`, `epoch`, ...) and JSON |
//! | `GET /ping`          | 204, for clients that probe InfluxDB                                 |
//! | `GET /health`        | every shard has a leader? JSON, 200 or 503                           |
//! | `GET /metrics`       | Pharos's own metrics, Prometheus text format                         |
//! | `GET /api/v1/export` | raw samples of one measurement as line protocol (ms precision)       |
//! | `GET /api/alerts`    | every alert instance (pending, firing, resolved) as JSON; `?state=firing` |
//! | `GET /api/silences`  | every silence as JSON                                                |
//! | `POST /api/v1/admin/compact` | maintenance on the shards this node leads, snapshot every local group, purge Raft logs, compact RocksDB (for measuring disk use, before backups) |
//! | `GET /api/v1/targets`, `/targets` | scrape targets as Prometheus's API shows them, plus `owner` (the node scraping it) |
//!
//! Errors are JSON `{"error": "..."}` (InfluxDB's shape). A body with a bad line gets 400 naming the line and
//! the reason; the lines before it are written, the bad line and the lines after it are not.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use pharos_storage::line_protocol;
use pharos_storage::{Point, Precision, SmolStr};
use serde_json::json;

use crate::auth::{Access, Auth, Credentials};
use crate::error::WriteError;
use crate::error::{chain, CallError};
use crate::ingest::{Batch, Ingested, Source};
use crate::node::Node;
use crate::rpc::fan_out;
use crate::shard_rpc::{RawRead, ShardRequest, ShardResponse};

/// One HTTP route: its path, the methods it answers, and what a caller needs to use it.
#[derive(Debug, Clone)]
pub struct Route {
    pub path: &'static str,
    pub methods: &'static [&'static str],
    pub access: Access,
}

/// Every route with its access decision and its handler: the router is built from this list only, so no
/// route can exist without a decision.
fn routes() -> Vec<(Route, MethodRouter<Arc<Node>>)> {
    use Access::{Change, Public, Read, Write};
    let r = |path, methods, access| Route { path, methods, access };
    vec![
        (r("/write", &["POST"], Write), post(write_v1)),
        (r("/api/v2/write", &["POST"], Write), post(write_v2)),
        (r("/api/v1/write", &["POST"], Write), post(remote_write)),
        (r("/query", &["GET", "POST"], Read), get(query).post(query)),
        // Liveness and readiness probes answer without a token (they reveal only whether shards have leaders).
        (r("/ping", &["GET", "HEAD"], Public), get(ping).head(ping)),
        (r("/health", &["GET"], Public), get(health)),
        (r("/metrics", &["GET"], Read), get(metrics)),
        (r("/api/v1/export", &["GET"], Read), get(export)),
        (r("/api/alerts", &["GET"], Read), get(alerts)),
        (r("/api/silences", &["GET"], Read), get(silences)),
        (r("/api/v1/targets", &["GET"], Read), get(targets)),
        (r("/api/v1/status/tsdb", &["GET"], Read), get(tsdb_status)),
        (r("/targets", &["GET"], Read), get(targets)),
        (r("/api/v1/admin/compact", &["POST"], Change), post(compact)),
        // The web UI's files: static, no data (the pages read it through the routes above, with a token).
        (r("/", &["GET"], Public), get(crate::ui::asset)),
        (r("/ui/app.js", &["GET"], Public), get(crate::ui::asset)),
        (r("/ui/style.css", &["GET"], Public), get(crate::ui::asset)),
        (r("/ui/vendor/uPlot.esm.js", &["GET"], Public), get(crate::ui::asset)),
        (r("/ui/vendor/uPlot.min.css", &["GET"], Public), get(crate::ui::asset)),
        (r("/ui/vendor/uPlot.LICENSE", &["GET"], Public), get(crate::ui::asset)),
    ]
}

/// The routes and their access decisions (for docs and the test that calls each route with each role).
pub fn route_table() -> Vec<Route> {
    routes().into_iter().map(|(r, _)| r).collect()
}

pub fn router(node: Arc<Node>) -> Router {
    let mut router = Router::new();
    for (route, handler) in routes() {
        let check = (node.auth.clone(), route.access);
        router = router.route(route.path, handler.route_layer(middleware::from_fn_with_state(check, authorize)));
    }
    router.layer(DefaultBodyLimit::disable()).with_state(node)
}

/// The access check in front of every route: 401 without a valid credential, 403 for the wrong role.
async fn authorize(
    State((auth, access)): State<(Arc<Auth>, Access)>,
    mut req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let from = req.extensions().get::<axum::extract::ConnectInfo<crate::tls::RemoteAddr>>().map(|c| c.0 .0);
    let creds = Credentials::from_headers(req.headers()).with_query(req.uri().query());
    match auth.check(access, &creds, "http", req.uri().path(), from) {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(d) => {
            let mut r = error_response(d.http_status(), d.message());
            if d.http_status() == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"pharos\""));
            }
            r
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn error_response(status: StatusCode, msg: String) -> Response {
    // InfluxDB clients read the error from this header too; a message that echoes a long query would make
    // a header no client reads (HTTP libraries stop at 8-64 KB), so the header carries its start.
    let mut head: String = msg.replace(['\n', '\r'], " ");
    if head.len() > MAX_ERROR_HEADER {
        let cut = (0..=MAX_ERROR_HEADER).rev().find(|&i| head.is_char_boundary(i)).unwrap_or(0);
        head.truncate(cut);
        head.push_str("...");
    }
    let mut r = (status, Json(json!({ "error": msg }))).into_response();
    if let Ok(v) = HeaderValue::from_str(&head) {
        r.headers_mut().insert("X-Influxdb-Error", v);
    }
    r
}

/// The most of an error message `X-Influxdb-Error` carries (the JSON body has all of it).
const MAX_ERROR_HEADER: usize = 1024;

fn write_error(e: WriteError) -> Response {
    let status = e.http_status();
    let mut r = error_response(status, e.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

async fn write_v1(
    State(node): State<Arc<Node>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write_body(node, q.get("precision").map(String::as_str).unwrap_or("ns"), headers, body).await
}

async fn write_v2(
    State(node): State<Arc<Node>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write_body(node, q.get("precision").map(String::as_str).unwrap_or("ns"), headers, body).await
}

/// Reads at most `limit` bytes of body, un-gzipping when asked.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, WriteError> {
    let raw = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit")
        {
            WriteError::TooLarge { limit }
        } else {
            WriteError::BadRequest(format!("reading the request body: {e}"))
        }
    })?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    flate2::read::GzDecoder::new(&raw[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| WriteError::BadRequest(format!("body is not valid gzip: {e}")))?;
    if out.len() > limit {
        return Err(WriteError::TooLarge { limit });
    }
    Ok(out.into())
}

async fn write_body(node: Arc<Node>, precision: &str, headers: HeaderMap, body: Body) -> Response {
    let Some(precision) = Precision::parse(precision) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("unknown precision {precision:?}: use ns, us, ms or s"),
        );
    };
    let body = match read_body(&headers, body, node.config.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            node.ingest.count_refused(Source::Http, e.code());
            return write_error(e);
        }
    };
    let limits = node.config.limits.line();
    let mut points: Vec<Point> = Vec::new();
    let parsed = line_protocol::parse_into(&body, precision, now_ns(), &limits, &mut points);
    if points.len() > node.config.limits.max_points_per_request {
        let e = WriteError::BadRequest(format!(
            "request holds {} points, more than limits.max_points_per_request ({}); nothing was written",
            points.len(),
            node.config.limits.max_points_per_request
        ));
        node.ingest.count_refused(Source::Http, e.code());
        return write_error(e);
    }
    let batch = Batch { source: Source::Http, precision: Some(precision), points, then_invalid: parsed.is_err() };
    match (parsed, node.ingest.ingest(batch).await) {
        (_, Err(e)) => write_error(e),
        (Err(pe), Ok(w)) => error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "{pe}; the {} points before that line were written, that line and the rest were not",
                w.outcome.points
            ),
        ),
        (Ok(()), Ok(w)) => ingested(w),
    }
}

/// 204 when every sample was written, else 400 saying which were dropped and why.
fn ingested(w: Ingested) -> Response {
    match w.refusal {
        Some(msg) => error_response(StatusCode::BAD_REQUEST, msg),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// InfluxDB 1.x `/query`: `q` (several statements separated by `;`), `epoch` (ns, u, ms, s, m, h; RFC 3339
/// text without), `pretty`, `stale=true` for follower reads; `db`, `rp`, `chunked` are accepted and
/// ignored (one database; results come in one piece). Parameters come from the URL or a form body (POST).
/// A statement's error is reported in its result with 200, as InfluxDB does; a query that does not parse
/// gets 400.
async fn query(
    State(node): State<Arc<Node>>,
    Query(mut params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        let body = match axum::body::to_bytes(body, node.config.limits.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => return error_response(StatusCode::BAD_REQUEST, format!("reading the request body: {e}")),
        };
        match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
            Ok(pairs) => params.extend(pairs),
            Err(e) => return error_response(StatusCode::BAD_REQUEST, format!("form body: {e}")),
        }
    }
    let Some(text) = params.get("q").filter(|q| !q.trim().is_empty()) else {
        return error_response(StatusCode::BAD_REQUEST, "missing required parameter \"q\"".into());
    };
    let Some(epoch) = pharos_query::Epoch::parse(params.get("epoch").map(String::as_str).unwrap_or("")) else {
        return error_response(StatusCode::BAD_REQUEST, "epoch must be one of ns, u, ms, s, m, h".into());
    };
    let opts = crate::query::QueryOptions { allow_stale: params.get("stale").is_some_and(|v| v == "true") };
    if params.get("chunked").is_some_and(|v| v == "true") {
        return query_chunked(node, text.clone(), epoch, opts);
    }
    match node.queries.run(text, opts).await {
        Ok(results) => {
            let body = pharos_query::result::results_json(&results, epoch);
            let text = if params.get("pretty").is_some_and(|v| v == "true") {
                serde_json::to_string_pretty(&body)
            } else {
                serde_json::to_string(&body)
            }
            .unwrap_or_default();
            let mut r = ([(header::CONTENT_TYPE, "application/json")], text).into_response();
            r.headers_mut().insert("X-Influxdb-Version", HeaderValue::from_static("1.8.10-pharos"));
            r
        }
        Err(e) => error_response(StatusCode::BAD_REQUEST, format!("error parsing query: {}", e.render(text))),
    }
}

/// `chunked=true`: one JSON object per line, each `{"results":[{"statement_id":N,"series":[...]}]}` with the
/// rows that became final (raw queries stream window by window, so a series may come in several objects),
/// as InfluxDB's chunked responses; a statement's error comes as `{"results":[{"statement_id":N,"error":..}]}`.
/// A query that does not parse still gets 400.
fn query_chunked(
    node: Arc<Node>,
    text: String,
    epoch: pharos_query::Epoch,
    opts: crate::query::QueryOptions,
) -> Response {
    let statements = match pharos_query::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            let e: pharos_query::QueryError = e.into();
            return error_response(StatusCode::BAD_REQUEST, format!("error parsing query: {}", e.render(&text)));
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let line = |v: serde_json::Value| Ok(Bytes::from(format!("{v}\n")));
        for (i, st) in statements.iter().enumerate() {
            let out = tx.clone();
            let deliver = move |series| {
                let out = out.clone();
                let r = pharos_query::StatementResult { statement_id: i, series, error: None };
                async move { out.send(line(pharos_query::result::results_json(&[r], epoch))).await.is_ok() }
            };
            let tail = match node.queries.stream_statement(st, opts, deliver).await {
                crate::query::Streamed::ClientGone => return,
                crate::query::Streamed::Failed(e) => {
                    pharos_query::StatementResult { statement_id: i, series: vec![], error: Some(e.render(&text)) }
                }
                crate::query::Streamed::Done { sent_any: false } => {
                    pharos_query::StatementResult { statement_id: i, series: vec![], error: None }
                }
                crate::query::Streamed::Done { sent_any: true } => continue,
            };
            if tx.send(line(pharos_query::result::results_json(&[tail], epoch))).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert("X-Influxdb-Version", HeaderValue::from_static("1.8.10-pharos"));
    r
}

/// Prometheus remote write: all of a request is checked before any of it is written (see `prom.rs`).
async fn remote_write(State(node): State<Arc<Node>>, body: Body) -> Response {
    let limit = node.config.limits.max_body_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            let e = WriteError::TooLarge { limit };
            node.ingest.count_refused(Source::RemoteWrite, e.code());
            return write_error(e);
        }
    };
    let points = match crate::prom::decode(
        &body,
        &node.config.limits.line(),
        limit,
        node.config.limits.max_points_per_request,
        crate::clock::now_ms(),
    ) {
        Ok(p) => p,
        Err(e) => {
            node.ingest.count_refused(Source::RemoteWrite, "invalid_argument");
            let status = match e {
                crate::prom::RemoteWriteError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return error_response(status, format!("{e}; nothing of this request was written"));
        }
    };
    let batch = Batch { source: Source::RemoteWrite, precision: None, points, then_invalid: false };
    match node.ingest.ingest(batch).await {
        Ok(w) => ingested(w),
        Err(e) => write_error(e),
    }
}

async fn ping() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert("X-Influxdb-Version", HeaderValue::from_static("1.8.10-pharos"));
    r.headers_mut().insert("X-Pharos-Version", HeaderValue::from_static(env!("CARGO_PKG_VERSION")));
    r
}

async fn health(State(node): State<Arc<Node>>) -> Response {
    let shards = node.router.shards();
    let answers = fan_out(0..shards, |&s| {
        let client = node.client.clone();
        async move { client.shard_request(s, &ShardRequest::Status, false, Duration::from_secs(2)).await }
    })
    .await;
    let mut ok = true;
    let mut list = Vec::new();
    for (s, res) in answers {
        match res {
            Ok(ShardResponse::Status(st)) if st.leader.is_some() => list.push(
                json!({ "shard": s, "leader": st.leader, "term": st.term, "applied": st.applied, "lag": st.lag }),
            ),
            Ok(_) => {
                ok = false;
                list.push(json!({ "shard": s, "leader": null, "error": "no leader" }));
            }
            Err(e) => {
                ok = false;
                list.push(json!({ "shard": s, "leader": null, "error": chain(&e) }));
            }
        }
    }
    // A full disk does not fail the probe (this node still serves reads and the writes of shards led
    // elsewhere); it is reported as a flag only (the probe is public: free space and the data directory are
    // in /metrics and the log).
    let disk = json!({ "writes_refused": node.cluster.disk.refusal().is_some() });
    let body = json!({ "status": if ok { "pass" } else { "fail" }, "node": node.id, "shards": list, "disk": disk });
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body)).into_response()
}

fn rfc3339(ms: i64) -> serde_json::Value {
    if ms == 0 {
        return serde_json::Value::Null;
    }
    json!(pharos_alert::time::rfc3339(ms))
}

fn tag_map(tags: &[pharos_proto::v1::Tag]) -> serde_json::Map<String, serde_json::Value> {
    tags.iter().map(|t| (t.key.clone(), json!(t.value))).collect()
}

/// `GET /api/alerts[?state=firing]`: `{"alerts": [{"rule", "group", "state", "activeSince", "firedAt",
/// "resolvedAt", "value", "labels", "annotations", "shard"}]}`.
async fn alerts(State(node): State<Arc<Node>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let list = match crate::alerting::list_alerts(&node.client, node.router.shards()).await {
        Ok(l) => l,
        Err(e) => return error_response(StatusCode::SERVICE_UNAVAILABLE, format!("reading alert state: {e}")),
    };
    let want = q.get("state").map(|s| s.to_ascii_lowercase());
    let alerts: Vec<serde_json::Value> = list
        .iter()
        .filter(|a| want.as_ref().is_none_or(|w| *w == a.state))
        .map(|a| {
            json!({
                "rule": a.rule, "group": a.group, "shard": a.shard, "state": a.state,
                "activeSince": rfc3339(a.active_since_ms), "firedAt": rfc3339(a.fired_at_ms),
                "resolvedAt": rfc3339(a.resolved_at_ms),
                "value": if a.value.is_finite() { json!(a.value) } else { json!(a.value.to_string()) },
                "labels": tag_map(&a.labels), "annotations": tag_map(&a.annotations),
            })
        })
        .collect();
    Json(json!({ "alerts": alerts })).into_response()
}

/// `GET /api/silences`: `{"silences": [{"id", "matchers", "startsAt", "endsAt", "createdBy", "comment", "state"}]}`.
async fn silences(State(node): State<Arc<Node>>) -> Response {
    let now = crate::clock::now_ms();
    let list: Vec<serde_json::Value> = crate::alerting::silences(&node.meta)
        .iter()
        .map(|s| crate::alerting::silence_to_proto(s, now))
        .map(|s| {
            json!({
                "id": s.id, "matchers": s.matchers, "startsAt": rfc3339(s.starts_at_ms), "endsAt": rfc3339(s.ends_at_ms),
                "createdBy": s.created_by, "comment": s.comment, "state": s.state,
            })
        })
        .collect();
    Json(json!({ "silences": list })).into_response()
}

/// `POST /api/v1/admin/compact`: this node's groups snapshot and purge their logs; RocksDB compacts.
async fn compact(State(node): State<Arc<Node>>) -> Response {
    let t = std::time::Instant::now();
    match node.cluster.compact(Duration::from_secs(120)).await {
        Ok(groups) => Json(json!({ "groups": groups, "seconds": t.elapsed().as_secs_f64() })).into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, format!("compaction failed: {e}")),
    }
}

/// Prometheus's `/api/v1/targets` shape (`activeTargets`), each target as its owner reports it.
/// `GET /api/v1/status/tsdb?topN=10&window=1h`: Prometheus's series statistics over the whole cluster
/// (`seriesCountByMetricName` and the rest), with the series each measurement created in the last
/// `window` (see crate::cardinality::explore).
async fn tsdb_status(State(node): State<Arc<Node>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let top = match q.get("topN").map(|v| v.parse::<u32>()) {
        None => 10,
        Some(Ok(n)) if (1..=10_000).contains(&n) => n,
        Some(_) => return error_response(StatusCode::BAD_REQUEST, "topN must be a number from 1 to 10000".into()),
    };
    let window = match q.get("window").map(|w| pharos_alert::PromDuration::parse(w)) {
        None => 3_600_000,
        Some(Ok(d)) if d.ms() > 0 => d.ms(),
        Some(_) => return error_response(StatusCode::BAD_REQUEST, "window must be a duration such as 1h".into()),
    };
    let since = crate::clock::now_ms() - window;
    match crate::cardinality::explore(&node.client, node.router.shards(), since, top).await {
        Ok(e) => Json(json!({"status": "success", "data": e.to_prometheus_json()})).into_response(),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e}; try again")),
    }
}

async fn targets(State(node): State<Arc<Node>>) -> Response {
    let list: Vec<serde_json::Value> = crate::scrape::cluster_targets(&node.client, &node.scraping)
        .await
        .into_iter()
        .map(|t| {
            json!({
                "scrapePool": t.job, "scrapeUrl": t.url, "health": t.health,
                "labels": tag_map(&t.labels), "discoveredLabels": tag_map(&t.discovered_labels),
                "lastScrape": rfc3339(t.last_scrape_ms), "lastScrapeDuration": t.last_duration_ms / 1000.0,
                "lastError": t.last_error, "lastSamples": t.last_samples,
                "scrapeInterval": format!("{}s", t.interval_ms as f64 / 1000.0), "owner": t.owner,
            })
        })
        .collect();
    Json(json!({ "status": "success", "data": { "activeTargets": list, "droppedTargets": [] } })).into_response()
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    node.cluster.update_gauges();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], node.metrics.render()).into_response()
}

/// `GET /api/v1/export?measurement=cpu&where=host=a,region=us&start=MS&end=MS&precision=ms&stale=true`: raw
/// samples as line protocol, one field per line. `start` and `end` are milliseconds; the lines' timestamps
/// are in `precision` (ns, us, ms or s; default ms), so `POST /write?precision=` with the same unit takes
/// them back (`s` drops the milliseconds: samples of one second then land on one timestamp).
async fn export(State(node): State<Arc<Node>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(measurement) = q.get("measurement").cloned() else {
        return error_response(StatusCode::BAD_REQUEST, "missing measurement=NAME".into());
    };
    let precision = match q.get("precision").map(String::as_str) {
        None => Precision::Milliseconds,
        Some(p) => match Precision::parse(p) {
            Some(p) => p,
            None => {
                return error_response(StatusCode::BAD_REQUEST, format!("unknown precision {p:?}: use ns, us, ms or s"))
            }
        },
    };
    let parse_ms = |k: &str, d: i64| -> Result<i64, Response> {
        match q.get(k) {
            None => Ok(d),
            Some(v) => v.parse().map_err(|_| {
                error_response(StatusCode::BAD_REQUEST, format!("{k}={v:?} is not milliseconds since the epoch"))
            }),
        }
    };
    let (start, end) = match (parse_ms("start", i64::MIN), parse_ms("end", i64::MAX)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let mut tags = Vec::new();
    for pair in q.get("where").map(String::as_str).unwrap_or("").split(',').filter(|s| !s.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) => tags.push((k.to_string(), v.to_string())),
            None => return error_response(StatusCode::BAD_REQUEST, format!("where: {pair:?} is not key=value")),
        }
    }
    let linearizable = q.get("stale").is_none_or(|v| v != "true");
    // The query limits bound an export as they bound a query: each shard stops at them, and so does the total.
    let (max_series, max_points) = (node.config.query.max_series, node.config.query.max_points);
    let req = Arc::new(ShardRequest::ReadRaw(RawRead { measurement, tags, start, end, max_series, max_points }));
    let answers = fan_out(0..node.router.shards(), |&s| {
        let (client, req) = (node.client.clone(), req.clone());
        async move { client.shard_request(s, &req, linearizable, Duration::from_secs(10)).await }
    })
    .await;
    let mut out = String::new();
    let (mut samples, mut series_read) = (0u64, 0u64);
    for (_, res) in answers {
        match res {
            Ok(ShardResponse::Raw(series)) => {
                samples += series.iter().map(|s| s.ts.len() as u64).sum::<u64>();
                series_read += series.len() as u64;
                for (read, max, what, setting) in
                    [(series_read, max_series, "series", "max_series"), (samples, max_points, "samples", "max_points")]
                {
                    if read > max {
                        return error_response(
                            StatusCode::BAD_REQUEST,
                            format!(
                                "the export reads more than {max} {what} ([query] {setting}): narrow it with where=, \
                                 start= and end="
                            ),
                        );
                    }
                }
                for s in series {
                    let measurement = SmolStr::from(&s.measurement);
                    let tags: Vec<(SmolStr, SmolStr)> = s.tags.iter().map(|(k, v)| (k.into(), v.into())).collect();
                    let field = SmolStr::from(&s.field);
                    for (t, v) in s.ts.iter().zip(&s.vals) {
                        let p = Point {
                            measurement: measurement.clone(),
                            tags: tags.clone(),
                            fields: vec![(field.clone(), *v)],
                            timestamp: precision.from_millis(*t),
                        };
                        line_protocol::write_line(&p, &mut out);
                    }
                }
            }
            Ok(_) => {}
            Err(CallError::Invalid { why }) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!("{why}; narrow it with where=, start= and end="),
                )
            }
            Err(e) => return error_response(StatusCode::SERVICE_UNAVAILABLE, chain(&e)),
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
}
