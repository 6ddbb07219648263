//! Silences: matchers over a time window that mute matching alerts (Alertmanager's model).

use serde::{Deserialize, Serialize};

use crate::labels::Labels;
use crate::matcher::{matches_all, Matcher};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    /// Start of the window (ms), inclusive.
    pub starts_at: i64,
    /// End of the window (ms), exclusive.
    pub ends_at: i64,
    pub created_by: String,
    pub comment: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Starts later.
    Pending,
    Active,
    Expired,
}

/// Why a silence is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("a silence needs an id")]
    NoId,
    #[error("a silence needs at least one matcher")]
    NoMatchers,
    #[error("at least one matcher must not match the empty string, or the silence would mute every alert")]
    MatchesEverything,
    #[error("ends_at must be after starts_at")]
    EndsBeforeStart,
    #[error("created_by is required")]
    NoCreator,
}

impl Silence {
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if now_ms < self.starts_at {
            SilenceState::Pending
        } else if now_ms < self.ends_at {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    pub fn is_active(&self, now_ms: i64) -> bool {
        self.state(now_ms) == SilenceState::Active
    }

    /// Whether this silence mutes an alert with these labels at `now_ms`.
    pub fn mutes(&self, labels: &Labels, now_ms: i64) -> bool {
        self.is_active(now_ms) && matches_all(&self.matchers, labels)
    }

    /// Checks a silence before it is stored (Alertmanager's rules).
    pub fn validate(&self) -> Result<(), SilenceError> {
        if self.id.is_empty() {
            return Err(SilenceError::NoId);
        }
        if self.matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if self.matchers.iter().all(|m| m.matches_value("")) {
            return Err(SilenceError::MatchesEverything);
        }
        if self.ends_at <= self.starts_at {
            return Err(SilenceError::EndsBeforeStart);
        }
        if self.created_by.trim().is_empty() {
            return Err(SilenceError::NoCreator);
        }
        Ok(())
    }

    /// Ends the silence at `now_ms` (`silence expire`): an active one ends now, a pending one ends before it
    /// starts (starts_at and ends_at both now); an expired one is unchanged. Returns whether it changed.
    pub fn expire(&mut self, now_ms: i64) -> bool {
        match self.state(now_ms) {
            SilenceState::Expired => false,
            SilenceState::Active => {
                self.ends_at = now_ms;
                true
            }
            SilenceState::Pending => {
                self.starts_at = now_ms;
                self.ends_at = now_ms;
                true
            }
        }
    }
}

/// Whether any silence mutes an alert with these labels at `now_ms`.
pub fn is_silenced(silences: &[Silence], labels: &Labels, now_ms: i64) -> bool {
    silences.iter().any(|s| s.mutes(labels, now_ms))
}

/// The ids of the silences muting an alert with these labels at `now_ms`.
pub fn silenced_by<'a>(silences: &'a [Silence], labels: &Labels, now_ms: i64) -> Vec<&'a str> {
    silences.iter().filter(|s| s.mutes(labels, now_ms)).map(|s| s.id.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::labels;
    use crate::matcher::parse_matchers;

    fn silence(id: &str, m: &str, start: i64, end: i64) -> Silence {
        Silence {
            id: id.into(),
            matchers: parse_matchers(m).unwrap(),
            starts_at: start,
            ends_at: end,
            created_by: "ops".into(),
            comment: "maintenance".into(),
        }
    }

    #[test]
    fn window_is_start_inclusive_end_exclusive() {
        let s = silence("s1", "service=\"api\"", 100, 200);
        let l = labels([("service", "api")]);
        let cases = [
            (99, false, SilenceState::Pending),
            (100, true, SilenceState::Active),
            (199, true, SilenceState::Active),
            (200, false, SilenceState::Expired),
        ];
        for (now, muted, state) in cases {
            assert_eq!(s.mutes(&l, now), muted, "{now}");
            assert_eq!(s.state(now), state, "{now}");
        }
    }

    #[test]
    fn all_matchers_must_match() {
        let ss = vec![
            silence("a", "service=\"api\", env=~\"prod|staging\"", 0, 100),
            silence("b", "alertname=\"Disk\"", 0, 100),
            silence("c", "service=\"api\"", 50, 100),
        ];
        assert!(is_silenced(&ss, &labels([("service", "api"), ("env", "prod")]), 10));
        assert!(!is_silenced(&ss, &labels([("service", "api"), ("env", "dev")]), 10));
        assert_eq!(
            silenced_by(&ss, &labels([("service", "api"), ("env", "prod"), ("alertname", "Disk")]), 60),
            vec!["a", "b", "c"]
        );
        assert_eq!(silenced_by(&ss, &labels([("service", "api")]), 60), vec!["c"]);
        assert!(!is_silenced(&ss, &labels([("service", "api")]), 100));
    }

    #[test]
    fn validation() {
        assert_eq!(silence("a", "x=\"1\"", 0, 10).validate(), Ok(()));
        assert_eq!(silence("", "x=\"1\"", 0, 10).validate(), Err(SilenceError::NoId));
        assert_eq!(silence("a", "x=~\".*\"", 0, 10).validate(), Err(SilenceError::MatchesEverything));
        assert_eq!(silence("a", "x!=\"1\"", 0, 10).validate(), Err(SilenceError::MatchesEverything));
        assert_eq!(silence("a", "x!=\"1\", y=\"2\"", 0, 10).validate(), Ok(()));
        assert_eq!(silence("a", "x=\"1\"", 10, 10).validate(), Err(SilenceError::EndsBeforeStart));
        let mut s = silence("a", "x=\"1\"", 0, 10);
        s.matchers.clear();
        assert_eq!(s.validate(), Err(SilenceError::NoMatchers));
        let mut s = silence("a", "x=\"1\"", 0, 10);
        s.created_by = " ".into();
        assert_eq!(s.validate(), Err(SilenceError::NoCreator));
    }

    #[test]
    fn expire() {
        let mut active = silence("a", "x=\"1\"", 0, 100);
        assert!(active.expire(40));
        assert_eq!((active.starts_at, active.ends_at, active.state(40)), (0, 40, SilenceState::Expired));
        let mut pending = silence("b", "x=\"1\"", 50, 100);
        assert!(pending.expire(40));
        assert_eq!((pending.starts_at, pending.ends_at), (40, 40));
        let mut expired = silence("c", "x=\"1\"", 0, 10);
        assert!(!expired.expire(40));
        assert_eq!(expired.ends_at, 10);
    }

    #[test]
    fn serde_round_trip() {
        let s = silence("a", "service=~\"api|web\"", 1, 2);
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"id": "a", "matchers": ["service=~\"api|web\""], "starts_at": 1, "ends_at": 2,
                "created_by": "ops", "comment": "maintenance"})
        );
        assert_eq!(serde_json::from_value::<Silence>(j).unwrap(), s);
    }
}
