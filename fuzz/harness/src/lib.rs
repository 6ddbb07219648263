//! What every fuzz target checks: one function per input that Pharos reads from the network or the disk.
//! Each takes any bytes and panics only when Pharos is wrong: a parser or decoder that panics, overflows
//! its stack or allocates without bound, or a codec whose output does not read back bit for bit.
//!
//! The cargo-fuzz targets in `fuzz/targets` are one line each around these (`scripts/fuzz.sh` runs them
//! under libFuzzer on the nightly toolchain); `cargo test -p pharos-fuzz` replays every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through them on stable, and [`seeds`] makes the
//! binary inputs (packed batches, chunks, rollup blocks, snapshots, Raft entries, meta states) that a
//! fuzzer could not find on its own. See docs/reliability.md.

use std::sync::{Arc, OnceLock};

use pharos_storage::line_protocol::{self, Limits};
use pharos_storage::model::Point;
use pharos_storage::{codec, packed, rollup, EngineOptions, Precision, Retention, ShardEngine};

/// The clock every target runs at (timestamps are checked against it), 2027-01-15.
pub const NOW_MS: i64 = 1_800_000_000_000;

pub type Target = fn(&[u8]);

/// Every target, by the name its cargo-fuzz binary, corpus and regression directories carry.
pub const TARGETS: &[(&str, Target)] = &[
    ("line_protocol", line_protocol),
    ("query", query),
    ("remote_write", remote_write),
    ("exposition", exposition),
    ("rules_yaml", rules_yaml),
    ("routing_yaml", routing_yaml),
    ("scrape_yaml", scrape_yaml),
    ("packed", packed_batch),
    ("raft_wire", raft_wire),
    ("chunk", chunk),
    ("chunk_roundtrip", chunk_roundtrip),
    ("rollup", rollup_block),
    ("snapshot", snapshot),
    ("meta_state", meta_state),
];

/// Two points are the same when every name, tag, timestamp and value bit is.
fn assert_same(a: &[Point], b: &[Point], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: point count");
    for (x, y) in a.iter().zip(b) {
        assert_eq!((&x.measurement, &x.tags, x.timestamp), (&y.measurement, &y.tags, y.timestamp), "{what}");
        let bits = |p: &Point| p.fields.iter().map(|(k, v)| (k.clone(), v.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(x), bits(y), "{what}: fields of {}", x.measurement);
    }
}

/// Line protocol (HTTP `/write`, TCP and UDP listeners): whatever parses is written back by the exporter's
/// writer into lines that parse to the same points.
pub fn line_protocol(data: &[u8]) {
    let limits = Limits::default();
    let now_ns = NOW_MS * 1_000_000;
    let Ok(points) = line_protocol::parse(data, Precision::Nanoseconds, now_ns, &limits) else { return };
    let mut text = String::new();
    for p in &points {
        line_protocol::write_line(p, &mut text);
    }
    let again = line_protocol::parse(text.as_bytes(), Precision::Milliseconds, now_ns, &limits)
        .unwrap_or_else(|e| panic!("a written line does not parse back: {e}\n{text}"));
    assert_same(&points, &again, "line protocol written and parsed back");
}

/// The query language (gRPC Query, HTTP `/query`, rule files).
pub fn query(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pharos_query::parse(text);
    }
}

/// Prometheus remote write: snappy, then protobuf. The input is tried as it is, and compressed first (so
/// the fuzzer reaches the protobuf decoder); every point a body decodes to passes the write limits.
pub fn remote_write(data: &[u8]) {
    let limits = Limits::default();
    let decode = |body: &[u8]| pharos_node::prom::decode(body, &limits, 1 << 20, 100_000, NOW_MS);
    let _ = decode(data);
    let compressed = snap::raw::Encoder::new().compress_vec(data).expect("snappy compresses anything");
    if let Ok(points) = decode(&compressed) {
        for p in &points {
            if let Err(e) = limits.check(p, NOW_MS) {
                panic!("remote write let through a point the limits refuse: {e}: {p:?}");
            }
        }
    }
}

/// A scrape's body, as the Prometheus text format and as OpenMetrics.
pub fn exposition(data: &[u8]) {
    let _ = pharos_scrape::parse_exposition(data, pharos_scrape::Format::Text);
    let _ = pharos_scrape::parse_exposition(data, pharos_scrape::Format::OpenMetrics);
}

pub fn rules_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pharos_alert::parse_rule_file(text);
    }
}

pub fn routing_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pharos_alert::parse_routing_config(text);
    }
}

pub fn scrape_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pharos_scrape::parse_config(text);
    }
}

/// Packed write batches (Raft write entries, forwarded writes): a batch that decodes encodes to one that
/// decodes to the same points.
pub fn packed_batch(data: &[u8]) {
    let Ok(points) = packed::decode(data) else { return };
    let again = packed::decode(&packed::to_vec(&points)).expect("a re-encoded batch decodes");
    assert_same(&points, &again, "packed batch re-encoded");
}

/// What peers send: Raft entries, framed AppendEntries, forwarded shard commands and meta commands. An
/// entry that decodes encodes to bytes that decode to the same entry.
pub fn raft_wire(data: &[u8]) {
    if let Ok(e) = pharos_raft::wire::decode::<pharos_raft::types::Entry>(data) {
        let bytes = pharos_raft::wire::encode_entry(&e).expect("a decoded entry encodes");
        let again: pharos_raft::types::Entry = pharos_raft::wire::decode(&bytes).expect("a re-encoded entry decodes");
        assert_eq!(format!("{e:?}"), format!("{again:?}"), "entry re-encoded");
    }
    let _ = pharos_raft::network::unframe_append(data, &pharos_raft::log_store::LogCache::default());
    let _ = bincode::deserialize::<pharos_storage::Command>(data);
    let _ = bincode::deserialize::<pharos_raft::meta::MetaCommand>(data);
}

/// A stored chunk: any bytes decode or fail without panicking; a chunk that decodes has its header's sample
/// count, and its samples encode (every encoding that can hold them) and decode back bit for bit.
pub fn chunk(data: &[u8]) {
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    if codec::decode_chunk(data, &mut ts, &mut vals).is_err() {
        return;
    }
    assert_eq!(ts.len(), vals.len(), "a chunk decodes to as many timestamps as values");
    let header = codec::chunk_header(data).expect("a chunk that decodes has a header");
    assert_eq!(header.count as usize, ts.len(), "the header's count");
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "a chunk that decodes has increasing timestamps: {ts:?}");
    if !ts.is_empty() && ts.len() <= 65_535 {
        roundtrip(&ts, &vals);
    }
}

/// Every encoding of these samples (grid timestamps allowed) decodes to them bit for bit.
fn roundtrip(ts: &[i64], vals: &[f64]) {
    codec::allow_grid_timestamps(true);
    let check = |bytes: &[u8], what: &str| {
        let (mut t2, mut v2) = (Vec::new(), Vec::new());
        codec::decode_chunk(bytes, &mut t2, &mut v2).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(t2, ts, "{what}: timestamps");
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&v2), bits(vals), "{what}: values");
    };
    check(&codec::encode_chunk(ts, vals), "the smallest encoding");
    for enc in
        [codec::Encoding::Gorilla, codec::Encoding::Decimal, codec::Encoding::Constant, codec::Encoding::FloatBits]
    {
        if let Some(bytes) = codec::encode_chunk_with(enc, ts, vals) {
            check(&bytes, &format!("{enc:?}"));
        }
    }
}

/// Structure-aware chunks: the bytes steer a series the way scrapes make them (steps of about a scrape
/// interval with jitter, gaps, counters, gauges with few or many digits, repeats, NaN and infinities), which
/// random bytes would rarely reach; every encoding must give them back bit for bit.
pub fn chunk_roundtrip(data: &[u8]) {
    let mut r = data.iter().copied();
    let mut next = || r.next();
    let (Some(a), Some(b)) = (next(), next()) else { return };
    let step = [1i64, 1_000, 10_000, 15_000, 60_000][a as usize % 5];
    let mut t = NOW_MS - (b as i64) * 3_600_000 * if a & 0x80 != 0 { 1_000_000 } else { 1 };
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    let mut v = 0.0f64;
    while ts.len() < 4_000 {
        let (Some(op), Some(x)) = (next(), next()) else { break };
        t += match op & 3 {
            0 => step,
            1 => (step + (x as i8) as i64).max(1),
            2 => step * (1 + x as i64),
            _ => 1 + x as i64,
        };
        v = match (op >> 2) & 7 {
            0 => v,
            1 => v + x as f64,
            2 => (v * 100.0 + (x as i8) as f64).round() / 100.0,
            3 => f64::from_bits((0..8).fold(x as u64, |acc, _| (acc << 8) | next().map_or(0, |b| b as u64))),
            4 => [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MIN_POSITIVE, f64::MAX][x as usize % 6],
            5 => v * (1.0 + (x as f64) / 1e9),
            6 => (x as f64) * 0.1,
            _ => v - x as f64,
        };
        ts.push(t);
        vals.push(v);
    }
    if !ts.is_empty() {
        roundtrip(&ts, &vals);
    }
}

/// A stored rollup block: any bytes decode or fail; a block that decodes (with ascending bucket starts)
/// encodes to one that decodes to the same buckets.
pub fn rollup_block(data: &[u8]) {
    let Ok(buckets) = rollup::decode_block(data) else { return };
    if buckets.is_empty() || buckets.len() > 65_535 || !buckets.windows(2).all(|w| w[0].0 < w[1].0) {
        return;
    }
    let again = rollup::decode_block(&rollup::encode_block(&buckets)).expect("a re-encoded block decodes");
    assert_eq!(format!("{buckets:?}"), format!("{again:?}"), "rollup block re-encoded");
}

struct Db {
    _dir: tempfile::TempDir,
    db: Arc<rocksdb::DB>,
}

/// One RocksDB for the process (the snapshot target imports into it again and again).
fn db() -> &'static Db {
    static DB: OnceLock<Db> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = tempfile::TempDir::new().expect("a temporary directory");
        let db = pharos_storage::db::open(&dir.path().join("db"), &Default::default()).expect("RocksDB opens");
        Db { _dir: dir, db }
    })
}

/// A shard snapshot received from a peer: it is imported or refused, and an imported shard opens and reads
/// back without panicking.
pub fn snapshot(data: &[u8]) {
    let db = db().db.clone();
    let Ok(engine) = ShardEngine::import(db, 7, data, Arc::new(Retention::default()), EngineOptions::default()) else {
        return;
    };
    let ids = engine.select(&|_| true, &pharos_storage::Filter::All);
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    for sid in ids.iter().take(1_000) {
        let _ = engine.read_raw(sid, i64::MIN, i64::MAX, &mut ts, &mut vals);
        ts.clear();
        vals.clear();
    }
}

/// The meta group's state as stored and snapshotted: it decodes or fails, a decoded state survives a
/// round trip, and the documents the node reads from it (nodes, plan, seen, shape, tokens) parse or are
/// ignored without panicking.
pub fn meta_state(data: &[u8]) {
    if let Ok(state) = pharos_raft::meta::decode_persisted(data) {
        let bytes = bincode::serialize(&state).expect("a decoded state serializes");
        let again: pharos_raft::meta::MetaState = bincode::deserialize(&bytes).expect("and deserializes");
        assert!(again == state, "meta state re-encoded");
        let _ = pharos_node::rebalance::seen(&state);
        let _ = pharos_node::rebalance::NodesDoc::read(&state);
        let _ = pharos_node::rebalance::Plan::read(&state);
        let _ = pharos_node::join::shape_of(&state);
    }
    let _ = pharos_node::auth::tokens::TokenDoc::parse(data);
}

/// Inputs no fuzzer would find by mutation alone: valid binary inputs of each kind, as `(target, bytes)`.
/// `scripts/fuzz.sh` writes them next to the committed text corpora before a run.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let points: Vec<Point> = (0..20)
        .map(|i| Point {
            measurement: "cpu".into(),
            tags: vec![("host".into(), format!("h{}", i % 4).into()), ("region".into(), "eu".into())],
            fields: vec![("usage_user".into(), i as f64 * 1.5), ("usage_system".into(), 0.25)],
            timestamp: NOW_MS - 60_000 + i * 1_000,
        })
        .collect();
    out.push(("packed", packed::to_vec(&points)));
    let mut lines = String::new();
    for p in &points {
        line_protocol::write_line(p, &mut lines);
    }
    out.push(("line_protocol", lines.into_bytes()));

    // Remote write's protobuf, uncompressed: the target compresses what it is given.
    use pharos_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    use prost::Message;
    let series = |name: &str, le: &str| TimeSeries {
        labels: [("__name__", name), ("job", "node"), ("instance", "h:9100"), ("le", le)]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| Label { name: n.to_string(), value: v.to_string() })
            .collect(),
        samples: (0..5).map(|i| Sample { value: i as f64 * 0.5, timestamp: NOW_MS - 50_000 + i * 10_000 }).collect(),
    };
    let body = WriteRequest { timeseries: vec![series("up", ""), series("http_seconds_bucket", "0.25")] };
    out.push(("remote_write", body.encode_to_vec()));

    codec::allow_grid_timestamps(true);
    let ts: Vec<i64> = (0..120).map(|i| NOW_MS + i * 10_000 + (i * 7919) % 5 - 2).collect();
    let shapes: [Vec<f64>; 4] = [
        (0..120).map(|i| (i * i) as f64).collect(),
        (0..120).map(|i| ((i as f64) * 0.37).sin() * 100.0).collect(),
        vec![42.0; 120],
        (0..120).map(|i| (i as f64 * 1.25).round() / 4.0).collect(),
    ];
    for vals in &shapes {
        out.push(("chunk", codec::encode_chunk(&ts, vals)));
        for enc in [codec::Encoding::Gorilla, codec::Encoding::Decimal, codec::Encoding::FloatBits] {
            if let Some(b) = codec::encode_chunk_with(enc, &ts, vals) {
                out.push(("chunk", b));
            }
        }
    }
    out.push(("chunk_roundtrip", (0..=255u8).flat_map(|b| [b, b.wrapping_mul(31)]).collect()));

    let buckets: Vec<(i64, pharos_storage::aggregate::Partial)> = (0..30)
        .map(|i| {
            let mut p = pharos_storage::aggregate::Partial::of(NOW_MS + i * 60_000, i as f64);
            for k in 1..6 {
                p.add(NOW_MS + i * 60_000 + k * 10_000, (i * 6 + k) as f64 / 3.0);
            }
            (NOW_MS + i * 60_000, p)
        })
        .collect();
    out.push(("rollup", rollup::encode_block(&buckets)));

    // A shard with samples, sealed chunks and rollups, exported as a peer would send it.
    let dir = tempfile::TempDir::new().expect("a temporary directory");
    let db = pharos_storage::db::open(&dir.path().join("db"), &Default::default()).expect("RocksDB opens");
    let opts = EngineOptions { max_chunk_samples: 16, ..Default::default() };
    let mut e = ShardEngine::open(db, 7, Arc::new(Retention::default()), opts).expect("a shard opens");
    let write = pharos_storage::Command::Write(vec![Arc::new(points.clone())]);
    e.apply(&write, b"mark").expect("the seed batch applies");
    out.push(("snapshot", e.export().expect("the seed shard exports")));

    let mut state = pharos_raft::meta::MetaState::default();
    let addr = |i: u64| pharos_raft::NodeAddr { grpc: format!("10.0.0.{i}:8090"), http: format!("10.0.0.{i}:8086") };
    for i in 1..=3 {
        state.apply(&pharos_raft::meta::MetaCommand::AddNode { id: i, addr: addr(i) });
    }
    out.push(("meta_state", pharos_raft::meta::encode_persisted(&state)));
    out.push(("raft_wire", bincode::serialize(&write).expect("serializes")));
    let entry = pharos_raft::types::Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 42),
        payload: openraft::EntryPayload::Normal(pharos_raft::Request::Shard(write)),
    };
    out.push(("raft_wire", pharos_raft::wire::encode_entry(&entry).expect("encodes")));
    out
}
