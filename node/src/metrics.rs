//! Pharos's own metrics, served at `GET /metrics` in the Prometheus text format.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub points_written: IntCounter,
    pub samples_written: IntCounter,
    pub samples_rejected: IntCounterVec,
    pub write_requests: IntCounterVec,
    pub commit_seconds: HistogramVec,
    pub queue_depth: IntGaugeVec,
    pub shard_leader: IntGaugeVec,
    pub shard_applied: IntGaugeVec,
    pub series: IntGaugeVec,
    pub head_samples: IntGaugeVec,
    pub rollup_watermark: IntGaugeVec,
    pub rollup_pending: IntGaugeVec,
    pub rocksdb_memory: IntGaugeVec,
    pub rebalance_moves: IntGaugeVec,
    pub replicas_held: IntGauge,
    pub disk_free: IntGauge,
    pub clock_offset: prometheus::GaugeVec,
    pub disk_full: IntGauge,
    pub forwarded_writes: IntCounter,
    pub queries: IntCounterVec,
    pub query_cache: IntCounterVec,
    pub query_seconds: prometheus::Histogram,
    pub up: IntGauge,
    pub rule_evaluations: IntCounterVec,
    pub rule_group_seconds: HistogramVec,
    pub rule_group_lag_seconds: prometheus::Histogram,
    pub notifications: IntCounterVec,
    pub scraped_samples: IntCounter,
    pub scrape_write_failures: IntCounter,
    pub notification_latency_seconds: HistogramVec,
    pub auth_refusals: IntCounterVec,
}

impl Metrics {
    pub fn new(node_id: u64) -> Metrics {
        let registry =
            Registry::new_custom(Some("pharos".into()), Some([("node".to_string(), node_id.to_string())].into()))
                .expect("valid registry");
        let c = |name: &str, help: &str| {
            let m = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(m.clone())).expect("unique metric");
            m
        };
        let cv = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(m.clone())).expect("unique metric");
            m
        };
        let gv = |name: &str, help: &str, labels: &[&str]| {
            let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(m.clone())).expect("unique metric");
            m
        };
        let commit_seconds = HistogramVec::new(
            HistogramOpts::new(
                "raft_commit_seconds",
                "Time from proposing a shard write to its quorum commit and apply",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["shard"],
        )
        .expect("valid metric");
        registry.register(Box::new(commit_seconds.clone())).expect("unique metric");
        let query_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new("query_seconds", "Time to run one query statement on this node as coordinator")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )
        .expect("valid metric");
        registry.register(Box::new(query_seconds.clone())).expect("unique metric");
        let up = IntGauge::new("up", "1 while the node serves").expect("valid metric");
        let rule_group_seconds = HistogramVec::new(
            HistogramOpts::new("rule_group_seconds", "Time to evaluate one rule group and commit its state")
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["shard"],
        )
        .expect("valid metric");
        registry.register(Box::new(rule_group_seconds.clone())).expect("unique metric");
        let rule_group_lag_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "rule_group_lag_seconds",
                "How late a rule group's evaluation started after its scheduled time",
            )
            .buckets(vec![0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )
        .expect("valid metric");
        registry.register(Box::new(rule_group_lag_seconds.clone())).expect("unique metric");
        let notification_latency_seconds = HistogramVec::new(
            HistogramOpts::new(
                "notification_latency_seconds",
                "Time from a notification being queued to its successful delivery (including retries)",
            )
            .buckets(vec![0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
            &["integration"],
        )
        .expect("valid metric");
        registry.register(Box::new(notification_latency_seconds.clone())).expect("unique metric");
        registry.register(Box::new(up.clone())).expect("unique metric");
        Metrics {
            points_written: c("points_written_total", "Points accepted by this node as coordinator"),
            samples_written: c(
                "samples_written_total",
                "Samples (point fields) committed through this node as coordinator",
            ),
            samples_rejected: cv(
                "samples_rejected_total",
                "Samples refused at apply (or, for series_limit, before it)",
                &["reason"],
            ),
            auth_refusals: cv(
                "auth_refusals_total",
                "Calls refused by the access check, by interface (http, grpc, internal) and reason",
                &["interface", "reason"],
            ),
            write_requests: cv("write_requests_total", "Write requests by protocol and outcome", &["protocol", "code"]),
            commit_seconds,
            queue_depth: gv("write_queue_depth", "Write requests waiting in a shard leader's queue", &["shard"]),
            shard_leader: gv("shard_is_leader", "1 when this node leads the shard", &["shard"]),
            shard_applied: gv("shard_applied_index", "Last Raft log index applied by this replica", &["shard"]),
            series: gv("shard_series", "Series in this replica of the shard", &["shard"]),
            head_samples: gv(
                "shard_head_samples",
                "Samples held in memory in the series' head chunks of this replica (Gorilla-compressed)",
                &["shard"],
            ),
            rollup_watermark: gv(
                "shard_rollup_watermark_seconds",
                "Unix time up to which a rollup tier (1m, 1h) of this replica is built; queries read raw data after it",
                &["shard", "tier"],
            ),
            rollup_pending: gv(
                "shard_rollup_pending_series",
                "Series with samples written below a rollup watermark whose blocks are rebuilt at the next \
                 maintenance; queries read raw data there until then",
                &["shard"],
            ),
            rocksdb_memory: gv(
                "rocksdb_memory_bytes",
                "RocksDB memory by kind: memtables (all column families) and block_cache (shared)",
                &["kind"],
            ),
            rebalance_moves: gv(
                "rebalance_moves",
                "Moves of the latest rebalance by state (queued, running, done, failed), as the meta group records \
                 them (every node reports the same)",
                &["state"],
            ),
            replicas_held: {
                let g = IntGauge::new("replicas_held", "Shard replicas this node holds").expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            clock_offset: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "clock_offset_seconds",
                        "How far each peer's wall clock is ahead of this node's (negative: behind), from the \
                         liveness ping",
                    ),
                    &["peer"],
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            disk_free: {
                let g = IntGauge::new("disk_free_bytes", "Free space of the data directory's filesystem")
                    .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            disk_full: {
                let g = IntGauge::new(
                    "disk_full",
                    "1 while free disk space is below storage.min_free_bytes and writes are refused",
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            forwarded_writes: c("forwarded_writes_total", "Shard writes forwarded to another node's leader"),
            queries: cv("queries_total", "Query statements by outcome", &["outcome"]),
            query_cache: cv(
                "query_cache_buckets_total",
                "Whole buckets of cacheable shard queries run here: served from the cache (hit) or computed (miss)",
                &["result"],
            ),
            query_seconds,
            up,
            rule_evaluations: cv(
                "rule_evaluations_total",
                "Rule evaluations on this node's shard leaders by outcome",
                &["outcome"],
            ),
            rule_group_seconds,
            rule_group_lag_seconds,
            notifications: cv(
                "notifications_total",
                "Notification delivery attempts by integration kind and outcome",
                &["integration", "outcome"],
            ),
            notification_latency_seconds,
            scraped_samples: c("scraped_samples_total", "Samples scraped by this node and written"),
            scrape_write_failures: c(
                "scrape_write_failures_total",
                "Writes of scraped samples that failed (those samples were dropped)",
            ),
            registry,
        }
    }

    pub fn observe_query(&self, took: std::time::Duration, ok: bool) {
        self.query_seconds.observe(took.as_secs_f64());
        self.queries.with_label_values(&[if ok { "ok" } else { "error" }]).inc();
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}
