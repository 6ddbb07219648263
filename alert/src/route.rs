//! The routing tree: which receivers an alert goes to, and in which notification group.
//!
//! Alertmanager's rules: an alert enters a route if the route's matchers match; it then tries the child
//! routes in order, stopping after the first that matches unless that child has `continue: true`; a route
//! none of whose children matched is itself a destination. Children inherit receiver, `group_by` and
//! timings from their parent.
//!
//! The group key is `route key:group labels`, e.g. `{}/{severity="page"}/0:{alertname="HighLatency"}`; the
//! route key is the path of matcher sets from the root, with each child's index so that two children with
//! the same matchers keep their groups apart.

use serde::{Deserialize, Serialize};

use crate::duration::PromDuration;
use crate::labels::{format_labels, Labels};
use crate::matcher::{format_matchers, matches_all, Matcher};

/// Alertmanager's defaults.
pub const DEFAULT_GROUP_WAIT: PromDuration = PromDuration(30_000);
pub const DEFAULT_GROUP_INTERVAL: PromDuration = PromDuration(5 * 60_000);
pub const DEFAULT_REPEAT_INTERVAL: PromDuration = PromDuration(4 * 3_600_000);

/// Which labels form a notification group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// These labels (an empty list: one group for the whole route).
    Labels(Vec<String>),
    /// `group_by: ['...']`: every label, so each alert is its own group.
    All,
}

/// When a group's notifications go out (see [`crate::group`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTiming {
    /// Wait before the first notification of a new group, to gather alerts that arrive together.
    pub group_wait: PromDuration,
    /// Wait between notifications about a changed group.
    pub group_interval: PromDuration,
    /// Wait before repeating a notification about an unchanged, still firing group.
    pub repeat_interval: PromDuration,
}

impl Default for GroupTiming {
    fn default() -> Self {
        GroupTiming {
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
        }
    }
}

/// A node of the routing tree, with inherited settings resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub receiver: String,
    pub group_by: GroupBy,
    pub timing: GroupTiming,
    pub matchers: Vec<Matcher>,
    /// `continue`: after this route matched, go on trying its later siblings.
    pub continue_matching: bool,
    pub routes: Vec<Route>,
    /// `{}` for the root, `parent/{matchers}/index` below.
    pub key: String,
}

/// Where an alert goes: a receiver and the group it joins there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    pub receiver: String,
    pub route_key: String,
    /// `route key:group labels`; the identity of the notification group.
    pub group_key: String,
    /// The alert's values of the route's `group_by` labels (only those it has).
    pub group_labels: Labels,
    pub timing: GroupTiming,
}

impl Route {
    /// The routes an alert with these labels ends at, in tree order (empty if the root's matchers fail).
    pub fn matching(&self, labels: &Labels) -> Vec<&Route> {
        if !matches_all(&self.matchers, labels) {
            return vec![];
        }
        let mut all = Vec::new();
        for child in &self.routes {
            let found = child.matching(labels);
            let matched = !found.is_empty();
            all.extend(found);
            if matched && !child.continue_matching {
                break;
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        all
    }

    /// The group labels of an alert on this route.
    pub fn group_labels(&self, labels: &Labels) -> Labels {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => {
                names.iter().filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone()))).collect()
            }
        }
    }

    /// The receivers and groups of an alert with these labels.
    pub fn destinations(&self, labels: &Labels) -> Vec<Destination> {
        self.matching(labels)
            .into_iter()
            .map(|r| {
                let group_labels = r.group_labels(labels);
                Destination {
                    receiver: r.receiver.clone(),
                    route_key: r.key.clone(),
                    group_key: format!("{}:{}", r.key, format_labels(&group_labels)),
                    group_labels,
                    timing: r.timing,
                }
            })
            .collect()
    }

    /// The key of child `index` of a route keyed `parent`.
    pub(crate) fn child_key(parent: &str, matchers: &[Matcher], index: usize) -> String {
        format!("{parent}/{}/{index}", format_matchers(matchers))
    }
}
