//! Label sets, their fingerprints and the notification dedup key.
//!
//! A label set is a sorted map (`BTreeMap`), so iteration order, fingerprints and every rendering are stable.
//! The fingerprint is xxh3-64 over `name 0xff value 0xff` for each label in name order (0xff cannot occur in
//! UTF-8, so `{a="b\xffc"}`-style collisions between different sets are impossible).

use std::collections::BTreeMap;
use std::fmt::Write;

use xxhash_rust::xxh3::xxh3_64;

use crate::state::AlertState;

/// A set of labels (or annotations): name to value, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// The label every alert carries with its rule's name.
pub const ALERTNAME: &str = "alertname";

const SEP: u8 = 0xff;

/// The stable 64-bit identity of a label set (including `alertname`): xxh3 of the sorted pairs.
pub fn fingerprint(labels: &Labels) -> u64 {
    let mut buf = Vec::with_capacity(labels.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (k, v) in labels {
        buf.extend_from_slice(k.as_bytes());
        buf.push(SEP);
        buf.extend_from_slice(v.as_bytes());
        buf.push(SEP);
    }
    xxh3_64(&buf)
}

/// A fingerprint as the 16 lowercase hex digits Alertmanager prints.
pub fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

/// The stable key of one notification about one alert instance: `rule/fingerprint/state`, e.g.
/// `api/HighLatency/8d5b2f0c1a3e4f67/firing`. Receivers that see a key twice can drop the duplicate
/// (delivery is at-least-once); `rule` is the rule's key within the cluster (see `RuleGroup::rule_key`).
pub fn dedup_key(rule: &str, fp: u64, state: AlertState) -> String {
    format!("{rule}/{fp:016x}/{}", state.as_str())
}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `name` is a valid metric (recording rule) name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{alertname="X", instance="a:9100"}`: Alertmanager's rendering of a label set (sorted, values quoted).
pub fn format_labels(labels: &Labels) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&quote(v));
    }
    s.push('}');
    s
}

/// A double-quoted string with `\\`, `\"`, `\n`, `\r`, `\t` and other control characters escaped (Go's
/// `strconv.Quote` for the characters that occur in label values).
pub fn quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Builds a label set from pairs (tests and callers holding slices).
pub fn labels<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Labels {
    pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_xxh3_of_the_sorted_pairs() {
        let l = labels([("b", "2"), ("alertname", "X"), ("a", "1")]);
        assert_eq!(fingerprint(&l), xxh3_64(b"a\xff1\xffalertname\xffX\xffb\xff2\xff"));
        // Pinned: a change here would orphan every alert state kept in Raft.
        assert_eq!(fingerprint_hex(fingerprint(&l)), "a8405212f14577a1");
    }

    #[test]
    fn fingerprint_separates_names_from_values() {
        let a = labels([("ab", "c")]);
        let b = labels([("a", "bc")]);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&Labels::new()), fingerprint(&labels([("", "")])));
    }

    #[test]
    fn dedup_key_names_rule_fingerprint_and_state() {
        assert_eq!(dedup_key("api/HighLatency", 0xabc, AlertState::Firing), "api/HighLatency/0000000000000abc/firing");
        assert_eq!(dedup_key("r", u64::MAX, AlertState::Resolved), "r/ffffffffffffffff/resolved");
    }

    #[test]
    fn label_names() {
        for ok in ["a", "_", "A_1", "__name__", "severity"] {
            assert!(is_valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é", "a b", "a:b"] {
            assert!(!is_valid_label_name(bad), "{bad}");
        }
        assert!(is_valid_metric_name("job:latency:mean5m"));
        assert!(!is_valid_metric_name("5m"));
        assert!(!is_valid_metric_name("a-b"));
    }

    #[test]
    fn format_labels_quotes_values() {
        let l = labels([("b", "x\"y\\z\n"), ("a", "1")]);
        assert_eq!(format_labels(&l), r#"{a="1", b="x\"y\\z\n"}"#);
        assert_eq!(format_labels(&Labels::new()), "{}");
    }
}
