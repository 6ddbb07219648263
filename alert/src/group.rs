//! When a notification group is flushed, and whether a flush notifies (Alertmanager's dispatcher and
//! notification log, as pure state).
//!
//! ```text
//!  first alert ──group_wait──► flush ──group_interval──► flush ──group_interval──► flush ...
//!                                │
//!                                └─ notifies if: new firing alerts since the last notification, or
//!                                   (send_resolved) newly resolved ones, or all resolved after a firing
//!                                   notification, or still firing and repeat_interval has passed
//! ```
//!
//! As in Alertmanager, each integration of the receiver (`email/0`, `sms/0`, see
//! [`crate::config::Receiver::integrations`]) has its own log, so one with `send_resolved` hears of a
//! resolution while one without is not sent the unchanged firing alerts again.
//!
//! A group whose alerts all started more than `group_wait` ago (a new leader rebuilding its groups) is
//! flushed at once. The node keeps one [`GroupState`] per group key (in Raft, beside the outbox), calls
//! [`GroupState::tick`] when [`GroupState::next_flush`] comes, queues a notification for each integration
//! the answer names (see [`crate::payload::deliveries`]), and drops the group once a tick reports it
//! finished.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::route::GroupTiming;

/// What the last notification of a group said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyLog {
    /// When it was queued (ms).
    pub at: i64,
    /// Fingerprints of the alerts it reported firing, and resolved.
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
}

/// The timing state of one notification group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub created_at: i64,
    /// When the group is next flushed (ms).
    pub next_flush: i64,
    /// The last notification per integration id.
    pub logs: BTreeMap<String, NotifyLog>,
}

/// The outcome of a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// The integrations to notify of the group's current alerts now (empty: none).
    pub notify: Vec<String>,
    /// When to tick next.
    pub next: i64,
    /// No firing alerts are left and the receiver knows: the group can be dropped.
    pub finished: bool,
}

impl GroupState {
    /// A group created at `now` for alerts the oldest of which started at `oldest_start`.
    pub fn new(now: i64, oldest_start: i64, timing: &GroupTiming) -> GroupState {
        let wait = timing.group_wait.ms();
        let next_flush = if oldest_start.saturating_add(wait) < now { now } else { now.saturating_add(wait) };
        GroupState { created_at: now, next_flush, logs: BTreeMap::new() }
    }

    /// Whether the group is due for a flush.
    pub fn due(&self, now: i64) -> bool {
        now >= self.next_flush
    }

    /// Flushes the group if it is due: decides for each integration (`(id, send_resolved)`) whether to
    /// notify about the alerts now `firing` and `resolved` (fingerprints), records those notifications,
    /// and schedules the next flush one `group_interval` on (skipping ticks that were missed). Not due:
    /// no change, `next` says when.
    pub fn tick(
        &mut self,
        now: i64,
        timing: &GroupTiming,
        firing: &BTreeSet<u64>,
        resolved: &BTreeSet<u64>,
        integrations: &[(String, bool)],
    ) -> Tick {
        if !self.due(now) {
            return Tick { notify: vec![], next: self.next_flush, finished: false };
        }
        let mut notify = Vec::new();
        for (id, send_resolved) in integrations {
            let repeat = timing.repeat_interval.ms();
            if needs_update(self.logs.get(id), firing, resolved, *send_resolved, repeat, now) {
                self.logs.insert(id.clone(), NotifyLog { at: now, firing: firing.clone(), resolved: resolved.clone() });
                notify.push(id.clone());
            }
        }
        let interval = timing.group_interval.ms().max(1);
        let missed = (now - self.next_flush) / interval;
        self.next_flush += (missed + 1) * interval;
        Tick { notify, next: self.next_flush, finished: firing.is_empty() }
    }
}

/// Alertmanager's dedup decision for one flush: whether the current alerts differ from what the receiver
/// was last told enough to notify, or the repeat interval has passed (`now - last.at >= repeat`).
pub fn needs_update(
    last: Option<&NotifyLog>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat_interval_ms: i64,
    now: i64,
) -> bool {
    let Some(last) = last else { return !firing.is_empty() };
    if !firing.is_subset(&last.firing) {
        return true;
    }
    if firing.is_empty() {
        // All resolved: tell the receiver if it had been told of firing alerts (even without
        // send_resolved, so the log is cleared); alerts that fired and resolved in between are unknown to it.
        return !last.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&last.resolved) {
        return true;
    }
    now.saturating_sub(last.at) >= repeat_interval_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::PromDuration;

    const S: i64 = 1000;
    const M: i64 = 60 * S;

    fn timing() -> GroupTiming {
        GroupTiming {
            group_wait: PromDuration(30 * S),
            group_interval: PromDuration(5 * M),
            repeat_interval: PromDuration(60 * M),
        }
    }

    fn set(fps: &[u64]) -> BTreeSet<u64> {
        fps.iter().copied().collect()
    }

    #[test]
    fn new_group_waits_group_wait_unless_its_alerts_are_old() {
        let g = GroupState::new(1000 * S, 1000 * S, &timing());
        assert_eq!(g.next_flush, 1030 * S);
        assert!(!g.due(1029 * S));
        assert!(g.due(1030 * S));
        // A new leader rebuilding a group of alerts that started long ago flushes at once.
        assert_eq!(GroupState::new(1000 * S, 900 * S, &timing()).next_flush, 1000 * S);
        assert_eq!(GroupState::new(1000 * S, 970 * S, &timing()).next_flush, 1030 * S);
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_group_over_its_life() {
        let t = timing();
        let mut g = GroupState::new(0, 0, &t);
        let none = set(&[]);
        let hook = [("webhook/0".to_string(), true)];
        // Not due yet: nothing changes.
        assert_eq!(
            g.tick(10 * S, &t, &set(&[1]), &none, &hook),
            Tick { notify: vec![], next: 30 * S, finished: false }
        );
        // group_wait passed: first notification.
        assert_eq!(
            g.tick(30 * S, &t, &set(&[1]), &none, &hook),
            Tick { notify: ids(&["webhook/0"]), next: 30 * S + 5 * M, finished: false }
        );
        assert_eq!(g.logs["webhook/0"], NotifyLog { at: 30 * S, firing: set(&[1]), resolved: none.clone() });
        // Unchanged at the next interval: quiet.
        assert!(g.tick(30 * S + 5 * M, &t, &set(&[1]), &none, &hook).notify.is_empty());
        // A new alert joins: notified at the next interval.
        let tk = g.tick(30 * S + 10 * M, &t, &set(&[1, 2]), &none, &hook);
        assert_eq!((tk.notify.len(), tk.next), (1, 30 * S + 15 * M));
        // One resolves: with send_resolved, notified.
        assert_eq!(g.tick(30 * S + 15 * M, &t, &set(&[2]), &set(&[1]), &hook).notify.len(), 1);
        // Unchanged until repeat_interval (60m) after the last notification at 15m30s.
        assert!(g.tick(30 * S + 70 * M, &t, &set(&[2]), &set(&[1]), &hook).notify.is_empty());
        assert_eq!(g.tick(30 * S + 75 * M, &t, &set(&[2]), &set(&[1]), &hook).notify.len(), 1);
        // All resolved: notified, and the group is finished.
        let tk = g.tick(30 * S + 80 * M, &t, &none, &set(&[1, 2]), &hook);
        assert_eq!((tk.notify.len(), tk.finished), (1, true));
    }

    #[test]
    fn each_integration_keeps_its_own_log() {
        let t = timing();
        let mut g = GroupState::new(0, 0, &t);
        let both = [("pagerduty/0".to_string(), true), ("sms/0".to_string(), false)];
        assert_eq!(g.tick(30 * S, &t, &set(&[1, 2]), &set(&[]), &both).notify, ids(&["pagerduty/0", "sms/0"]));
        // 1 resolves: PagerDuty (send_resolved) hears, the SMS is not re-sent alert 2.
        assert_eq!(g.tick(30 * S + 5 * M, &t, &set(&[2]), &set(&[1]), &both).notify, ids(&["pagerduty/0"]));
        // 3 fires: both hear.
        assert_eq!(
            g.tick(30 * S + 10 * M, &t, &set(&[2, 3]), &set(&[1]), &both).notify,
            ids(&["pagerduty/0", "sms/0"])
        );
        // An integration added later (config reload) starts with no log: notified at the next tick.
        let three = [both[0].clone(), both[1].clone(), ("email/0".to_string(), false)];
        assert_eq!(g.tick(30 * S + 15 * M, &t, &set(&[2, 3]), &set(&[1]), &three).notify, ids(&["email/0"]));
    }

    #[test]
    fn missed_ticks_are_skipped_on_the_grid() {
        let t = timing();
        let mut g = GroupState::new(0, 0, &t);
        let tk = g.tick(30 * S + 17 * M, &t, &set(&[1]), &set(&[]), &[]);
        assert_eq!(tk.next, 30 * S + 20 * M);
    }

    #[test]
    fn needs_update_table() {
        let log = NotifyLog { at: 0, firing: set(&[1, 2]), resolved: set(&[3]) };
        // (name, last log, firing, resolved, send_resolved, now, notify?)
        type Case<'a> = (&'a str, Option<&'a NotifyLog>, &'a [u64], &'a [u64], bool, i64, bool);
        let cases: [Case; 10] = [
            ("first, firing", None, &[1], &[], false, 0, true),
            ("first, only resolved", None, &[], &[1], true, 0, false),
            ("new firing", Some(&log), &[1, 2, 4], &[], false, 1, true),
            ("fewer firing, no send_resolved", Some(&log), &[1], &[2, 3], false, 1, false),
            ("fewer firing, send_resolved", Some(&log), &[1], &[2, 3], true, 1, true),
            ("same resolved, send_resolved", Some(&log), &[1, 2], &[3], true, 1, false),
            ("all resolved", Some(&log), &[], &[1, 2, 3], false, 1, true),
            ("unchanged before repeat", Some(&log), &[1, 2], &[3], true, 59 * M, false),
            ("unchanged at repeat", Some(&log), &[1, 2], &[3], true, 60 * M, true),
            (
                "resolved between notifications",
                Some(&NotifyLog { at: 0, firing: set(&[]), resolved: set(&[]) }),
                &[],
                &[5],
                true,
                1,
                false,
            ),
        ];
        for (name, last, firing, resolved, send_resolved, now, want) in cases {
            assert_eq!(needs_update(last, &set(firing), &set(resolved), send_resolved, 60 * M, now), want, "{name}");
        }
    }
}
