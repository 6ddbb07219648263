//! The server's log: Pharos's own lines at INFO (start, addresses, leadership and membership changes, errors),
//! openraft's at WARN, without the races openraft reports at WARN that are expected around every election.
//! `--log` / `PHAROS_LOG` (or `log` in the file, else `RUST_LOG`) sets any `tracing` filter for more.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, ServerFlags};
use crate::node::Node;

/// Logs the groups this node starts or stops leading, one line per change (elections settle within a
/// second, so a start logs one line for every group it leads rather than one per group).
pub async fn leadership_changes(node: std::sync::Arc<Node>) {
    let mut led: Vec<String> = Vec::new();
    loop {
        let mut now: Vec<String> = Vec::new();
        if node.meta.raft.metrics().borrow().state == openraft::ServerState::Leader {
            now.push("meta".into());
        }
        now.extend(node.replicas.all().iter().filter(|r| r.leads()).map(|r| r.shard.to_string()));
        if now != led {
            let gained: Vec<&String> = now.iter().filter(|g| !led.contains(g)).collect();
            let lost: Vec<&String> = led.iter().filter(|g| !now.contains(g)).collect();
            tracing::info!(leads = %now.join(","), gained = %join(&gained), lost = %join(&lost), "leadership changed");
            led = now;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn join(groups: &[&String]) -> String {
    if groups.is_empty() {
        "-".into()
    } else {
        groups.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// The filter in force: `--log`/`PHAROS_LOG`, else `RUST_LOG` when the configuration file does not set one,
/// else the configuration's (default `info,openraft=warn`).
pub fn filter_text(flags: &ServerFlags, config: &Config) -> String {
    match std::env::var("RUST_LOG") {
        Ok(r) if flags.log.is_none() && config.log == crate::config::DEFAULT_LOG && !r.trim().is_empty() => r,
        _ => config.log.clone(),
    }
}

/// Installs the subscriber on stderr. A filter that does not parse falls back to the default, saying so.
pub fn init(flags: &ServerFlags, config: &Config) {
    let text = filter_text(flags, config);
    let (filter, bad) = match EnvFilter::try_new(&text) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new(crate::config::DEFAULT_LOG), Some(e)),
    };
    // With debug logs on, openraft's races are part of what the operator asked to see.
    let races = ExpectedRaces { keep: filter.max_level_hint().is_some_and(|l| l >= LevelFilter::DEBUG) };
    // Colors for a terminal only: a log file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // The EnvFilter is the subscriber's global filter, as a plain `fmt().with_env_filter()` would have it: a
    // callsite it disables is never evaluated again. The races filter is the formatter's own and only looks
    // at the openraft WARN/ERROR events the EnvFilter let through.
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(races);
    tracing_subscriber::registry().with(filter).with(layer).init();
    if let Some(e) = bad {
        tracing::warn!(filter = %text, cause = %e, "log filter does not parse; using {}", crate::config::DEFAULT_LOG);
    }
}

/// What openraft logs at WARN or ERROR for normal events: a reply that arrives after the vote moved on (a
/// heartbeat from the previous term, a vote answer after the election ended), of which each healthy start
/// logged dozens; and, while a peer is down, several lines per group at every retry, each naming the
/// transport's "Unreachable node" error, plus the backoff notice that follows them (a 10-second outage of
/// one peer logged some 200 lines on each other node). Pharos says instead, once, that the peer stopped
/// answering and when it answers again (`node/src/scrape.rs`, liveness). Other replication errors (storage
/// failures, remote errors, timeouts) stay. Matched against the event's message and fields.
const EXPECTED_RACES: &[&str] = &[
    "A message will be ignored because vote changed",
    "Unreachable node",
    "backoff mode: drain events without processing them",
];

struct ExpectedRaces {
    keep: bool,
}

impl<S> Filter<S> for ExpectedRaces {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    /// Only openraft's WARN and ERROR callsites need a look at each event; every other callsite is decided
    /// once, by the EnvFilter.
    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if !self.keep && *meta.level() <= Level::WARN && meta.target().starts_with("openraft") {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::always()
        }
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        if self.keep || *meta.level() > Level::WARN || !meta.target().starts_with("openraft") {
            return true;
        }
        let mut text = EventText(String::new());
        event.record(&mut text);
        !EXPECTED_RACES.iter().any(|r| text.0.contains(r))
    }
}

/// An event's message and fields as one string.
struct EventText(String);

impl Visit for EventText {
    fn record_debug(&mut self, _field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, "{value:?} ");
    }
}
