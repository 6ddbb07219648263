//! An alert as routing, silences, inhibition and receivers see it (Alertmanager's model).

use serde::{Deserialize, Serialize};

use crate::labels::{fingerprint, Labels};

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert: labels (including `alertname`), annotations, and when it started and ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Labels,
    /// When it started firing (ms).
    pub starts_at: i64,
    /// When it resolved (ms); None while firing.
    pub ends_at: Option<i64>,
    /// A link back to the rule's query (the node builds it from its external URL).
    pub generator_url: String,
}

impl Alert {
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    pub fn status(&self) -> AlertStatus {
        if self.ends_at.is_some() {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        }
    }

    pub fn is_firing(&self) -> bool {
        self.ends_at.is_none()
    }
}
