//! Label sets as this crate passes them around: a `Vec<(name, value)>` sorted by name, with no empty values.
//!
//! As in Prometheus, a label with an empty value is the same as no label: [`set`] with an empty value deletes.
//! The metric name is the `__name__` label only inside relabeling; [`crate::Sample`] keeps it apart.

use std::hash::Hasher;

use xxhash_rust::xxh3::Xxh3;

/// A label set sorted by name, without duplicates or empty values.
pub type Labels = Vec<(String, String)>;

/// The label holding the metric name during relabeling.
pub const METRIC_NAME: &str = "__name__";

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// The value of `name`, or `""` when absent (Prometheus's `Get`).
pub fn get<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) => &labels[i].1,
        Err(_) => "",
    }
}

/// Sets `name` to `value`, keeping the set sorted; an empty value deletes the label.
pub fn set(labels: &mut Labels, name: &str, value: &str) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => {
            if labels[i].1 != value {
                labels[i].1 = value.to_string();
            }
        }
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_string(), value.to_string())),
    }
}

/// Removes `name` if present.
pub fn del(labels: &mut Labels, name: &str) {
    if let Ok(i) = labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        labels.remove(i);
    }
}

/// Builds a sorted label set from pairs; later pairs win, empty values are dropped.
pub fn from_pairs<I, K, V>(pairs: I) -> Labels
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut out = Labels::new();
    for (k, v) in pairs {
        set(&mut out, k.as_ref(), v.as_ref());
    }
    out
}

/// A stable 64-bit hash of a sorted label set (XXH3, seed 0: the same on every node and build).
pub fn hash(labels: &[(String, String)]) -> u64 {
    let mut h = Xxh3::new();
    for (k, v) in labels {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// `{a="1", b="2"}`, for messages.
pub fn display(labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_order_and_empty_deletes() {
        let mut l = from_pairs([("b", "2"), ("a", "1")]);
        assert_eq!(l, vec![("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())]);
        set(&mut l, "c", "3");
        set(&mut l, "a", "");
        set(&mut l, "z", "");
        assert_eq!(l, from_pairs([("b", "2"), ("c", "3")]));
        assert_eq!(get(&l, "c"), "3");
        assert_eq!(get(&l, "a"), "");
        del(&mut l, "b");
        assert_eq!(l, from_pairs([("c", "3")]));
    }

    #[test]
    fn names() {
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a:b"));
        assert!(!is_valid_label_name(""));
        assert!(is_valid_metric_name("a:b_c"));
        assert!(!is_valid_metric_name("a-b"));
    }

    #[test]
    fn hash_is_stable_and_order_sensitive_to_content() {
        let a = from_pairs([("a", "1"), ("b", "2")]);
        assert_eq!(hash(&a), hash(&from_pairs([("b", "2"), ("a", "1")])));
        assert_ne!(hash(&a), hash(&from_pairs([("a", "12")])));
        assert_eq!(display(&a), r#"{a="1", b="2"}"#);
    }
}
