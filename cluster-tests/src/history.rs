//! A history of what clients did and saw, and a checker for it (Jepsen-style).
//!
//! The model is a grow-only set per series: a write adds one point (a timestamp) to each series it names;
//! a read returns the set of a series' timestamps. Every operation is recorded with when it was invoked and
//! when it returned, and whether it succeeded: a write that failed or timed out is *indeterminate* (it may
//! or may not have taken effect, at any time after it was invoked).
//!
//! For linearizable reads, the checker verifies what a linearizable grow-only set must show:
//!
//! - **no lost write**: a read contains every point whose write was acknowledged before the read began;
//! - **no phantom**: every point a read returns was written by a write invoked before the read returned;
//! - **real-time order**: a read that began after another ended returns a superset of what it returned;
//! - **one order**: any two reads of a series return sets one of which contains the other (concurrent reads
//!   are linearized one before the other, and the set only grows);
//! - **durability**: the final read, after every fault is healed, contains every acknowledged point.
//!
//! Together these rule out lost, phantom, stale and non-monotonic reads, the failures a read-index bug or
//! a split brain produces; they are the grow-only-set case of a linearizability check (as Elle's and
//! Porcupine's set models decide it), without the search a register would need. Stale reads (`stale=true`)
//! promise less: no phantom, and the checker reports how far behind they were.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

/// One operation, with its interval in nanoseconds since the history began.
#[derive(Debug, Clone)]
pub enum Op {
    /// Points (series, timestamp) written together; `ok`: acknowledged, else indeterminate.
    Write { points: Vec<(String, i64)>, start: u64, end: u64, ok: bool },
    /// A successful read of one series.
    Read { series: String, stale: bool, got: BTreeSet<i64>, start: u64, end: u64 },
}

pub struct History {
    t0: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for History {
    fn default() -> Self {
        History { t0: Instant::now(), ops: Mutex::new(Vec::new()) }
    }
}

impl History {
    /// Nanoseconds since the history began (an operation's start or end).
    pub fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    pub writes_ok: usize,
    pub writes_indeterminate: usize,
    pub reads: usize,
    pub stale_reads: usize,
    /// Each violation, described.
    pub violations: Vec<String>,
    /// The longest a stale read lagged: the oldest acknowledged point it missed, acknowledged this long
    /// (ms) before the read began.
    pub stale_lag_ms: u64,
}

/// Checks a history; `last` holds each series' final read (after the faults were healed).
pub fn check(ops: &[Op], last: &BTreeMap<String, BTreeSet<i64>>) -> Report {
    let mut r = Report::default();
    // Per series: each point's write interval and outcome.
    let mut written: BTreeMap<&str, BTreeMap<i64, (u64, u64, bool)>> = BTreeMap::new();
    let mut reads: BTreeMap<&str, Vec<(u64, u64, &BTreeSet<i64>)>> = BTreeMap::new();
    // Writes first: operations are recorded when they return, so a read may come before a write it saw.
    for op in ops {
        if let Op::Write { points, start, end, ok } = op {
            if *ok {
                r.writes_ok += 1;
            } else {
                r.writes_indeterminate += 1;
            }
            for (s, ts) in points {
                written.entry(s).or_default().insert(*ts, (*start, *end, *ok));
            }
        }
    }
    for op in ops {
        if let Op::Read { series, stale, got, start, end } = op {
            let w = written.get(series.as_str());
            let mut phantoms = got.iter().filter(|ts| !w.is_some_and(|w| w.get(ts).is_some_and(|p| p.0 < *end)));
            if let Some(ts) = phantoms.next() {
                r.violations
                    .push(format!("phantom: a read of {series} returned {ts}, which no write invoked before it had"));
            }
            if *stale {
                r.stale_reads += 1;
                continue;
            }
            r.reads += 1;
            reads.entry(series).or_default().push((*start, *end, got));
        }
    }
    // How far behind stale reads were.
    for op in ops {
        if let Op::Read { series, stale: true, got, start, .. } = op {
            if let Some(w) = written.get(series.as_str()) {
                let missed =
                    w.iter().filter(|(ts, p)| p.2 && p.1 < *start && !got.contains(ts)).map(|(_, p)| start - p.1).max();
                r.stale_lag_ms = r.stale_lag_ms.max(missed.unwrap_or(0) / 1_000_000);
            }
        }
    }
    // The final reads come after every operation: they join each series' chain.
    let after = ops.iter().map(|op| match op {
        Op::Write { end, .. } | Op::Read { end, .. } => *end,
    });
    let after = after.max().unwrap_or(0) + 1;
    for (series, got) in last {
        let w = written.get(series.as_str());
        if let Some(ts) = got.iter().find(|ts| !w.is_some_and(|w| w.contains_key(ts))) {
            r.violations.push(format!("phantom: the final read of {series} returned {ts}, which no write had"));
        }
        reads.entry(series.as_str()).or_default().push((after, after + 1, got));
    }
    for (series, rs) in &reads {
        let w = written.get(series).cloned().unwrap_or_default();
        for (start, _, got) in rs {
            if let Some((ts, p)) = w.iter().find(|(ts, p)| p.2 && p.1 < *start && !got.contains(ts)) {
                r.violations.push(format!(
                    "lost: a read of {series} began {} ms after the write of {ts} was acknowledged and did not see it",
                    (start.saturating_sub(p.1)) / 1_000_000
                ));
            }
        }
        // One order: sorted by size, each read's set contains the one before (inclusion is transitive).
        let mut sorted = rs.clone();
        sorted.sort_by_key(|(s, e, got)| (got.len(), *s, *e));
        for pair in sorted.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if !a.2.is_subset(b.2) {
                let extra = a.2.difference(b.2).next().copied().unwrap_or_default();
                r.violations.push(format!(
                    "no single order: two reads of {series} ({} and {} points) each saw a point the other did not \
                     (e.g. {extra})",
                    a.2.len(),
                    b.2.len()
                ));
            }
        }
        // Real time: no read saw fewer points than a read that had ended before it began.
        let mut min_end_larger = u64::MAX;
        let mut i = sorted.len();
        while i > 0 {
            let size = sorted[i - 1].2.len();
            let mut j = i;
            while j > 0 && sorted[j - 1].2.len() == size {
                j -= 1;
            }
            for a in &sorted[j..i] {
                if min_end_larger < a.0 {
                    r.violations.push(format!(
                        "stale: a read of {series} saw {} points after an earlier read had seen more",
                        a.2.len()
                    ));
                }
            }
            min_end_larger = sorted[j..i].iter().map(|a| a.1).fold(min_end_larger, u64::min);
            i = j;
        }
        if r.violations.len() > 50 {
            break;
        }
    }
    for (series, w) in &written {
        let got = last.get(*series).cloned().unwrap_or_default();
        if let Some(ts) = w.iter().filter(|(_, p)| p.2).map(|(ts, _)| ts).find(|ts| !got.contains(ts)) {
            r.violations.push(format!("lost: the final read of {series} lacks the acknowledged point {ts}"));
        }
    }
    r.violations.dedup();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(ts: i64, start: u64, end: u64, ok: bool) -> Op {
        Op::Write { points: vec![("s".into(), ts)], start, end, ok }
    }
    fn rd(got: &[i64], start: u64, end: u64) -> Op {
        Op::Read { series: "s".into(), stale: false, got: got.iter().copied().collect(), start, end }
    }
    fn last(got: &[i64]) -> BTreeMap<String, BTreeSet<i64>> {
        [("s".to_string(), got.iter().copied().collect())].into()
    }

    #[test]
    fn a_linearizable_history_passes() {
        let ops = [
            w(1, 0, 10, true),
            rd(&[], 5, 8),
            rd(&[1], 9, 20),
            w(2, 15, 30, false),
            rd(&[1], 21, 25),
            rd(&[1, 2], 22, 40),
        ];
        let r = check(&ops, &last(&[1, 2]));
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!((r.writes_ok, r.writes_indeterminate, r.reads), (1, 1, 4));
    }

    #[test]
    fn each_kind_of_violation_is_found() {
        let cases: [(&[Op], &[i64], &str); 6] = [
            (&[w(1, 0, 10, true), rd(&[], 11, 12)], &[1], "lost: a read"),
            (&[rd(&[7], 0, 5), w(7, 6, 9, true)], &[7], "phantom"),
            (&[w(1, 0, 1, false), rd(&[1], 2, 3), rd(&[], 4, 5)], &[1], "stale"),
            (&[w(1, 0, 1, false), w(2, 0, 1, false), rd(&[1], 2, 9), rd(&[2], 3, 8)], &[1, 2], "no single order"),
            (&[w(1, 0, 1, true)], &[], "lost: the final read"),
            // An indeterminate write that a read saw, gone by the end.
            (&[w(5, 0, 1, false), rd(&[5], 2, 3)], &[], "stale"),
        ];
        for (ops, fin, want) in cases {
            let r = check(ops, &last(fin));
            assert!(r.violations.iter().any(|v| v.starts_with(want)), "{want}: {:?}", r.violations);
        }
    }
}
