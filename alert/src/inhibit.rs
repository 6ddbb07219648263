//! Inhibition: a firing alert mutes others (a `severity="page"` outage mutes the warnings it causes).
//!
//! Alertmanager's rule: target T is inhibited by rule R if T matches R's target matchers and some *firing*
//! alert S matches R's source matchers and has the same values as T for every label in `equal` (a label
//! missing on both sides counts as equal). When T also matches the source matchers, only sources that do
//! not match the target matchers count, so an alert never inhibits itself or its peers.

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::labels::Labels;
use crate::matcher::{matches_all, Matcher};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InhibitRule {
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// Whether a firing alert labelled `source` inhibits `target` under this rule.
    pub fn inhibits(&self, source: &Labels, target: &Labels) -> bool {
        if !matches_all(&self.target_matchers, target) || !matches_all(&self.source_matchers, source) {
            return false;
        }
        let two_sided = matches_all(&self.source_matchers, target);
        if two_sided && matches_all(&self.target_matchers, source) {
            return false;
        }
        self.equal.iter().all(|n| source.get(n) == target.get(n))
    }
}

/// Whether `target` is inhibited by any rule and any firing alert among `alerts` (resolved ones are
/// ignored). Returns the fingerprint of the first inhibiting alert.
pub fn inhibited_by(rules: &[InhibitRule], target: &Labels, alerts: &[Alert]) -> Option<u64> {
    rules.iter().find_map(|r| {
        alerts.iter().filter(|a| a.is_firing()).find(|a| r.inhibits(&a.labels, target)).map(Alert::fingerprint)
    })
}

/// Whether `target` is inhibited (see [`inhibited_by`]).
pub fn is_inhibited(rules: &[InhibitRule], target: &Labels, alerts: &[Alert]) -> bool {
    inhibited_by(rules, target, alerts).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::labels;
    use crate::matcher::parse_matchers;

    fn rule(src: &str, tgt: &str, equal: &[&str]) -> InhibitRule {
        InhibitRule {
            source_matchers: parse_matchers(src).unwrap(),
            target_matchers: parse_matchers(tgt).unwrap(),
            equal: equal.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn alert(l: Labels, firing: bool) -> Alert {
        Alert {
            labels: l,
            annotations: Labels::new(),
            starts_at: 0,
            ends_at: (!firing).then_some(10),
            generator_url: String::new(),
        }
    }

    #[test]
    fn page_inhibits_warning_of_the_same_service() {
        let r = vec![rule("severity=\"page\"", "severity=\"warning\"", &["service"])];
        let page_api = alert(labels([("alertname", "Down"), ("severity", "page"), ("service", "api")]), true);
        let warn_api = labels([("alertname", "Slow"), ("severity", "warning"), ("service", "api")]);
        let warn_db = labels([("alertname", "Slow"), ("severity", "warning"), ("service", "db")]);
        let info_api = labels([("alertname", "Note"), ("severity", "info"), ("service", "api")]);
        assert_eq!(inhibited_by(&r, &warn_api, std::slice::from_ref(&page_api)), Some(page_api.fingerprint()));
        assert!(!is_inhibited(&r, &warn_db, std::slice::from_ref(&page_api)), "different service");
        assert!(!is_inhibited(&r, &info_api, std::slice::from_ref(&page_api)), "target matchers fail");
        assert!(!is_inhibited(&r, &page_api.labels, std::slice::from_ref(&page_api)), "source is not a target");
    }

    #[test]
    fn resolved_sources_do_not_inhibit() {
        let r = vec![rule("severity=\"page\"", "severity=\"warning\"", &[])];
        let resolved = alert(labels([("severity", "page")]), false);
        assert!(!is_inhibited(&r, &labels([("severity", "warning")]), &[resolved]));
    }

    #[test]
    fn equal_labels_missing_on_both_sides_count_as_equal() {
        let r = vec![rule("severity=\"page\"", "severity=\"warning\"", &["cluster"])];
        let src = alert(labels([("severity", "page")]), true);
        assert!(is_inhibited(&r, &labels([("severity", "warning")]), std::slice::from_ref(&src)));
        assert!(!is_inhibited(&r, &labels([("severity", "warning"), ("cluster", "a")]), &[src]));
    }

    #[test]
    fn an_alert_does_not_inhibit_itself_or_its_peers() {
        // Source and target matchers both match alerts of this rule: peers must not mute each other.
        let r = vec![rule("alertname=\"NodeDown\"", "alertname=~\"Node.*\"", &["dc"])];
        let a = alert(labels([("alertname", "NodeDown"), ("dc", "x"), ("node", "1")]), true);
        let b = labels([("alertname", "NodeDown"), ("dc", "x"), ("node", "2")]);
        assert!(!is_inhibited(&r, &b, std::slice::from_ref(&a)));
        assert!(!is_inhibited(&r, &a.labels, std::slice::from_ref(&a)));
        // A NodeSlow target (not a source) is inhibited by the NodeDown source.
        let slow = labels([("alertname", "NodeSlow"), ("dc", "x")]);
        assert!(is_inhibited(&r, &slow, &[a]));
    }
}
