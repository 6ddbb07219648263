//! The notification dispatcher of a shard's leader: Alertmanager's routing, grouping and dedup over the
//! shard's committed alerts, with at-least-once delivery.
//!
//! ```text
//!  committed alerts (firing, resolved) ─ silences, inhibition ─► route tree ─► groups (receiver, group key)
//!     group due (group_wait / group_interval)? ── tick against the committed notification log
//!        ├─ nothing new, repeat_interval not due: nothing
//!        └─ notify integration i ─► delivery task: send, retry with backoff ─► success
//!                                                                              └─► commit log[i] (Raft)
//! ```
//!
//! The notification log is committed only after the receiver accepted the notification. A leader that
//! dies in between leaves the log behind the alerts; the next leader loads both, flushes every group at
//! once and sends what the log does not cover (possibly again: at least once, never zero times). Every
//! request carries the notification's stable key ([`pharos_alert::notification_key`]) so receivers can
//! drop such repeats; PagerDuty events carry a `dedup_key`.
//!
//! Grouping is cluster-wide: the alerts are every shard's ([`super::view`]), and each notification group
//! (receiver + group key) is dispatched by one shard's leader, the one the ring gives its key
//! ([`super::view::owner`]); its notification log is committed in that shard's Raft state. So alerts of
//! rule groups evaluated on different shards share a notification as in Alertmanager, and a group is still
//! notified from one place, at least once, through failovers of either shard.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pharos_alert::{
    delivery, is_inhibited, is_silenced, notification_key, Alert, GroupState, GroupTiming, Labels, Notification,
    NotifyLog, RoutingConfig,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::deliver::{self, Sender};
use super::store::{self, StoredGroup};
use super::Alerting;
use crate::clock::now_ms;

/// A notification group being tracked.
struct Group {
    receiver: String,
    group_labels: Labels,
    timing: GroupTiming,
    /// `logs` are the committed (acknowledged) notification logs; `next_flush` is in memory only.
    state: GroupState,
    /// Whether a log is committed under this group's key.
    stored: bool,
    /// For a group loaded from its committed log: when it was last notified. Once its timing is known
    /// (at its first flush), its next flush is no earlier than one group_interval after that, as the old
    /// leader would have done (what it had not delivered is due by then: at least once).
    resumed_after: Option<i64>,
}

/// What a delivery task reports.
enum Outcome {
    Delivered {
        group_key: String,
        integration: String,
        log: NotifyLog,
        key: String,
    },
    /// Given up for this flush (a permanent error); the next flush tries again.
    Abandoned {
        group_key: String,
        integration: String,
        key: String,
    },
}

struct InFlight {
    key: String,
    task: tokio::task::AbortHandle,
}

struct Dispatcher {
    ctx: Arc<Alerting>,
    shard: u32,
    groups: BTreeMap<String, Group>,
    inflight: HashMap<(String, String), InFlight>,
    done: mpsc::UnboundedSender<Outcome>,
    routing: Option<(u64, Option<Arc<RoutingConfig>>)>,
    sender: Arc<Sender>,
}

/// Runs the dispatcher until aborted (with leadership). `stored` are the committed notification logs.
pub async fn run(ctx: Arc<Alerting>, shard: u32, stored: Vec<StoredGroup>) {
    let (done, mut outcomes) = mpsc::unbounded_channel();
    let sender = Arc::new(Sender::new(&ctx.config.alerting));
    let mut view = ctx.view.subscribe();
    let mut d =
        Dispatcher { ctx, shard, groups: BTreeMap::new(), inflight: HashMap::new(), done, routing: None, sender };
    let now = now_ms();
    for g in stored {
        if super::view::owner(&d.ctx.router, &g.group_key) != shard {
            // Logged under another owner (before grouping was cluster-wide): its owner notifies the group.
            let _ = store::commit(&d.ctx, shard, vec![], vec![store::notify_key(&g.group_key)]).await;
            continue;
        }
        let last = g.logs.values().map(|l| l.at).max();
        let state = GroupState { created_at: now, next_flush: now, logs: g.logs };
        d.groups.insert(
            g.group_key,
            Group {
                receiver: g.receiver,
                group_labels: Labels::new(),
                timing: GroupTiming::default(),
                state,
                stored: true,
                resumed_after: last,
            },
        );
    }
    // Only a view read after this leadership began is used: a round that ends after now began before it
    // perhaps, the next one after it (an older view could lack alerts the logs hold, and resolve them).
    let fresh_from = *view.borrow_and_update() + 2;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = view.changed() => {}
            Some(o) = outcomes.recv() => d.outcome(o).await,
        }
        if *view.borrow() >= fresh_from {
            d.flush().await;
        }
    }
}

impl Dispatcher {
    /// The routing configuration in force (parsed again when its version changes).
    fn routing(&mut self) -> Option<Arc<RoutingConfig>> {
        let stored = self.ctx.meta.state().routing.clone();
        if self.routing.as_ref().map(|(v, _)| *v) != Some(stored.version) {
            let parsed = if stored.text.is_empty() {
                None
            } else {
                match pharos_alert::parse_routing_config(&stored.text) {
                    Ok(c) => Some(Arc::new(c)),
                    Err(errors) => {
                        warn!(version = stored.version, errors = ?errors, "stored routing configuration does not parse");
                        None
                    }
                }
            };
            self.routing = Some((stored.version, parsed));
        }
        self.routing.as_ref().and_then(|(_, c)| c.clone())
    }

    async fn outcome(&mut self, o: Outcome) {
        match o {
            Outcome::Delivered { group_key, integration, log, key } => {
                if self.inflight.get(&(group_key.clone(), integration.clone())).is_some_and(|f| f.key == key) {
                    self.inflight.remove(&(group_key.clone(), integration.clone()));
                }
                self.record(&group_key, integration, log).await;
            }
            Outcome::Abandoned { group_key, integration, key } => {
                if self.inflight.get(&(group_key.clone(), integration.clone())).is_some_and(|f| f.key == key) {
                    self.inflight.remove(&(group_key, integration));
                }
            }
        }
    }

    /// Commits that an integration acknowledged a notification.
    async fn record(&mut self, group_key: &str, integration: String, log: NotifyLog) {
        let Some(g) = self.groups.get_mut(group_key) else { return };
        g.state.logs.insert(integration, log);
        let s =
            StoredGroup { group_key: group_key.to_string(), receiver: g.receiver.clone(), logs: g.state.logs.clone() };
        match store::commit(&self.ctx, self.shard, vec![(store::notify_key(group_key), store::encode(&s))], vec![])
            .await
        {
            Ok(()) => g.stored = true,
            Err(e) => warn!(shard = self.shard, cause = %e, "committing a notification log; it may be sent again"),
        }
    }

    async fn flush(&mut self) {
        let Some(cfg) = self.routing() else { return };
        let now = now_ms();
        let external_url = self.ctx.config.external_url();
        // A partial view (a shard that has not answered) notifies what it shows but resolves nothing by
        // absence (below).
        let Some((alerts, complete)) = self.ctx.view.alerts(&format!("{external_url}/alerts")) else { return };
        let silences = super::silences(&self.ctx.meta);
        let firing: Vec<Alert> = alerts.iter().filter(|a| a.is_firing()).cloned().collect();
        let mut current: BTreeMap<String, (pharos_alert::Destination, Vec<Alert>)> = BTreeMap::new();
        for a in alerts {
            if is_silenced(&silences, &a.labels, now)
                || (a.is_firing() && is_inhibited(&cfg.inhibit_rules, &a.labels, &firing))
            {
                continue;
            }
            for dest in cfg.destinations(&a.labels) {
                if super::view::owner(&self.ctx.router, &dest.group_key) != self.shard {
                    continue;
                }
                current.entry(dest.group_key.clone()).or_insert_with(|| (dest, Vec::new())).1.push(a.clone());
            }
        }
        let keys: BTreeSet<String> = self.groups.keys().chain(current.keys()).cloned().collect();
        let mut finished = Vec::new();
        for key in keys {
            let (dest, group_alerts) = match current.remove(&key) {
                Some((d, a)) => (Some(d), a),
                None => (None, Vec::new()),
            };
            if !self.groups.contains_key(&key) {
                // A new group starts with its first firing alert (resolved-only groups were already told).
                let Some(dest) = &dest else { continue };
                let Some(oldest) = group_alerts.iter().filter(|a| a.is_firing()).map(|a| a.starts_at).min() else {
                    continue;
                };
                self.groups.insert(
                    key.clone(),
                    Group {
                        receiver: dest.receiver.clone(),
                        group_labels: dest.group_labels.clone(),
                        timing: dest.timing,
                        state: GroupState::new(now, oldest, &dest.timing),
                        stored: false,
                        resumed_after: None,
                    },
                );
            }
            let g = self.groups.get_mut(&key).expect("inserted above");
            if let Some(d) = &dest {
                g.group_labels = d.group_labels.clone();
                g.timing = d.timing;
                g.receiver = d.receiver.clone();
            }
            // With its route's timing when its alerts route here, else the default's.
            if let Some(last) = g.resumed_after.take() {
                g.state.next_flush = g.state.next_flush.max(last.saturating_add(g.timing.group_interval.ms()));
            }
            if !g.state.due(now) {
                continue;
            }
            let Some(receiver) = cfg.receiver(&g.receiver) else {
                // Validation makes this rare (a log kept from an older configuration); say it once per interval.
                warn!(receiver = %g.receiver, group = %key, "alerts route to a receiver the routing configuration lacks");
                g.state.next_flush = now + g.timing.group_interval.ms().max(1000);
                continue;
            };
            let integrations = receiver.integrations();
            let ids: Vec<(String, bool)> = integrations.iter().map(|i| (i.id.clone(), i.send_resolved)).collect();
            let fps_firing: BTreeSet<u64> =
                group_alerts.iter().filter(|a| a.is_firing()).map(Alert::fingerprint).collect();
            let fps_resolved: BTreeSet<u64> =
                group_alerts.iter().filter(|a| !a.is_firing()).map(Alert::fingerprint).collect();
            let unknown = |fp: &u64| !fps_firing.contains(fp) && !fps_resolved.contains(fp);
            if !complete && g.state.logs.values().any(|l| l.firing.iter().any(unknown)) {
                // An alert this group was told of is not in the partial view: perhaps on the shard that has
                // not answered. The group waits for the whole view rather than call it resolved.
                continue;
            }
            let mut next = g.state.clone();
            let tick = next.tick(now, &g.timing, &fps_firing, &fps_resolved, &ids);
            g.state.next_flush = next.next_flush;
            let n = Notification {
                receiver: &receiver.name,
                group_key: &key,
                group_labels: &g.group_labels,
                alerts: &group_alerts,
                external_url: &external_url,
            };
            let nkey = notification_key(&n);
            let mut immediate = Vec::new();
            for id in &tick.notify {
                let log = next.logs.get(id).cloned().expect("tick logs what it notifies");
                let Some(integration) = integrations.iter().find(|i| &i.id == id) else { continue };
                let valid_for = self.ctx.config.alerting.alertmanager_valid_for.as_millis() as i64;
                match delivery(integration, &n, now, valid_for) {
                    // Nothing for this integration (it does not want resolutions): told, as far as it cares.
                    None => immediate.push((id.clone(), log)),
                    Some(req) => {
                        let slot = (key.clone(), id.clone());
                        if self.inflight.get(&slot).is_some_and(|f| f.key == nkey) {
                            continue; // the same notification is still being delivered
                        }
                        if let Some(old) = self.inflight.remove(&slot) {
                            old.task.abort(); // superseded by newer content
                        }
                        info!(receiver = %receiver.name, integration = %id, group = %key, alerts = group_alerts.len(), key = %nkey, "notifying");
                        let task = tokio::spawn(deliver_until_done(
                            self.sender.clone(),
                            self.ctx.clone(),
                            req,
                            nkey.clone(),
                            key.clone(),
                            id.clone(),
                            log,
                            self.done.clone(),
                        ));
                        self.inflight.insert(slot, InFlight { key: nkey.clone(), task: task.abort_handle() });
                    }
                }
            }
            let busy = self.inflight.keys().any(|(k, _)| k == &key);
            let told_all = g.state.logs.values().all(|l| l.firing.is_empty());
            if tick.finished && !busy && told_all && immediate.is_empty() {
                finished.push(key.clone());
            }
            for (id, log) in immediate {
                self.record(&key, id, log).await;
            }
        }
        for key in finished {
            if let Some(g) = self.groups.remove(&key) {
                debug!(group = %key, "notification group finished");
                if g.stored {
                    if let Err(e) = store::commit(&self.ctx, self.shard, vec![], vec![store::notify_key(&key)]).await {
                        debug!(cause = %e, "dropping a finished group's log");
                    }
                }
            }
        }
    }
}

/// Sends one notification until a receiver accepts it, backing off exponentially (1 s doubling up to
/// `alerting.retry_max_backoff`); a permanent refusal (4xx other than 408 and 429, a bad address) ends the
/// attempt and the group's next flush tries again.
#[allow(clippy::too_many_arguments)]
async fn deliver_until_done(
    sender: Arc<Sender>,
    ctx: Arc<Alerting>,
    req: pharos_alert::Delivery,
    key: String,
    group_key: String,
    integration: String,
    log: NotifyLog,
    done: mpsc::UnboundedSender<Outcome>,
) {
    let kind = integration.split('/').next().unwrap_or("unknown").to_string();
    let queued = Instant::now();
    let max = ctx.config.alerting.retry_max_backoff.max(Duration::from_secs(1));
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 1u32;
    loop {
        match sender.send(&req, &key).await {
            Ok(()) => {
                ctx.metrics.notifications.with_label_values(&[&kind, "ok"]).inc();
                ctx.metrics
                    .notification_latency_seconds
                    .with_label_values(&[&kind])
                    .observe(queued.elapsed().as_secs_f64());
                info!(integration = %integration, key = %key, attempt, "notification delivered");
                let _ = done.send(Outcome::Delivered { group_key, integration, log, key });
                return;
            }
            Err(deliver::SendError::Permanent(why)) => {
                ctx.metrics.notifications.with_label_values(&[&kind, "refused"]).inc();
                warn!(integration = %integration, key = %key, cause = %why, "notification refused; retried at the group's next flush");
                let _ = done.send(Outcome::Abandoned { group_key, integration, key });
                return;
            }
            Err(deliver::SendError::Retry(why)) => {
                ctx.metrics.notifications.with_label_values(&[&kind, "failed"]).inc();
                warn!(integration = %integration, key = %key, attempt, retry_in = ?backoff, cause = %why, "notification failed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
        attempt += 1;
    }
}
