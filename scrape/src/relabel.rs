//! Prometheus relabeling (`relabel_configs`, `metric_relabel_configs`), with Prometheus's semantics.
//!
//! Each rule reads the values of its `source_labels`, joined with `separator` (default `;`), and matches them
//! against `regex` (default `(.*)`), which is fully anchored (`^(?:regex)$`). Then, by `action`:
//!
//! | action      | effect                                                                                     |
//! |-------------|--------------------------------------------------------------------------------------------|
//! | `replace`   | (default) on a match, set `target_label` to `replacement` (default `$1`), both expanded     |
//! | `keep`      | drop the label set unless the value matches                                                |
//! | `drop`      | drop the label set if the value matches                                                    |
//! | `keepequal` | drop the label set unless the value equals the value of `target_label`                    |
//! | `dropequal` | drop the label set if the value equals the value of `target_label`                        |
//! | `hashmod`   | set `target_label` to the MD5 of the value (its last 8 bytes, big-endian) modulo `modulus` |
//! | `labelmap`  | for every label whose *name* matches, copy its value to the name `replacement` expands to  |
//! | `labeldrop` | remove every label whose name matches                                                      |
//! | `labelkeep` | remove every label whose name does not match                                               |
//! | `lowercase` | set `target_label` to the value in lower case                                              |
//! | `uppercase` | set `target_label` to the value in upper case                                              |
//!
//! `replace` expands `$1`, `${1}` and `$name` (named groups) in both `target_label` and `replacement`, as Go's
//! `Regexp.Expand` does (`$1x` is the group named `1x`); an empty result deletes the label, a target that is
//! not a valid label name is skipped, and no match means no change. A missing source label reads as the empty
//! string.
//!
//! Rules are checked when built ([`RelabelConfig::new`]), with Prometheus's messages: `replace` needs a
//! `target_label`, `hashmod` a non-zero `modulus`, `labeldrop` takes only `regex`, and so on. Label names are
//! checked against the classic `[a-zA-Z_][a-zA-Z0-9_]*`.

use regex::Regex;
use serde::Deserialize;

use crate::labels::{self, is_valid_label_name, Labels};

/// What a rule does; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    /// Parses an action name, ignoring case as Prometheus does.
    pub fn parse(name: &str) -> Option<Action> {
        Some(match name.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

/// One relabeling rule as written in YAML; every field optional. [`RelabelConfig::new`] checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelabelConfig {
    pub source_labels: Option<Vec<String>>,
    pub separator: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub target_label: Option<String>,
    pub replacement: Option<String>,
    pub action: Option<String>,
}

/// Why a rule is invalid, and which of its fields is wrong (for the line number), if one is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RelabelError {
    pub field: Option<&'static str>,
    pub message: String,
}

/// A checked relabeling rule.
#[derive(Debug, Clone)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    /// Compiled as `^(?:regex)$`.
    pub regex: Regex,
    pub modulus: u64,
    pub target_label: String,
    pub replacement: String,
    pub action: Action,
    /// The regex as written.
    regex_text: String,
}

impl PartialEq for RelabelConfig {
    fn eq(&self, o: &Self) -> bool {
        self.source_labels == o.source_labels
            && self.separator == o.separator
            && self.regex_text == o.regex_text
            && self.modulus == o.modulus
            && self.target_label == o.target_label
            && self.replacement == o.replacement
            && self.action == o.action
    }
}

const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REPLACEMENT: &str = "$1";

/// Compiles a relabeling regex, anchored at both ends.
pub fn anchored_regex(text: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{text})$"))
}

/// Whether a `target_label` (or labelmap `replacement`) that uses `$` references is well formed: Prometheus's
/// `^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$`, i.e. it starts with a letter, `_` or a reference, every `$`
/// starts `${word}` or `$word`, and everything else is a word character.
fn is_valid_template(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if b.is_empty() || b[0].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            i += 1;
            if i < b.len() && b[i] == b'{' {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && word(b[j]) {
                    j += 1;
                }
                if j == start || j >= b.len() || b[j] != b'}' {
                    return false;
                }
                i = j + 1;
            } else {
                let start = i;
                while i < b.len() && word(b[i]) {
                    i += 1;
                }
                if i == start {
                    return false;
                }
            }
        } else if word(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

impl RelabelConfig {
    /// Checks a rule and fills in Prometheus's defaults.
    pub fn new(raw: RawRelabelConfig) -> Result<RelabelConfig, RelabelError> {
        let err = |field: Option<&'static str>, message: String| RelabelError { field, message };
        let action = match &raw.action {
            None => Action::Replace,
            Some(a) => Action::parse(a).ok_or_else(|| err(Some("action"), format!("unknown relabel action {a:?}")))?,
        };
        let a = action.as_str();
        for name in raw.source_labels.iter().flatten() {
            if !is_valid_label_name(name) {
                return Err(err(Some("source_labels"), format!("{name:?} is not a valid label name")));
            }
        }
        let regex_text = raw.regex.clone().unwrap_or_else(|| DEFAULT_REGEX.to_string());
        let regex = anchored_regex(&regex_text)
            .map_err(|e| err(Some("regex"), format!("invalid regex {regex_text:?}: {}", first_line(&e.to_string()))))?;
        let target_label = raw.target_label.clone().unwrap_or_default();
        let replacement = raw.replacement.clone().unwrap_or_else(|| DEFAULT_REPLACEMENT.to_string());
        let separator = raw.separator.clone().unwrap_or_else(|| DEFAULT_SEPARATOR.to_string());
        let modulus = raw.modulus.unwrap_or(0);
        let bad_target =
            || err(Some("target_label"), format!("{target_label:?} is invalid 'target_label' for {a} action"));

        if action == Action::HashMod && modulus == 0 {
            return Err(err(Some("modulus"), "relabel configuration for hashmod requires non-zero modulus".into()));
        }
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && target_label.is_empty() {
            return Err(err(None, format!("relabel configuration for {a} action requires 'target_label' value")));
        }
        match action {
            Action::Replace if target_label.contains('$') && !is_valid_template(&target_label) => {
                return Err(bad_target())
            }
            Action::Replace | Action::HashMod if !target_label.contains('$') && !is_valid_label_name(&target_label) => {
                return Err(bad_target())
            }
            Action::HashMod if target_label.contains('$') => return Err(bad_target()),
            Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual => {
                if !is_valid_label_name(&target_label) {
                    return Err(bad_target());
                }
                if replacement != DEFAULT_REPLACEMENT {
                    return Err(err(Some("replacement"), format!("'replacement' can not be set for {a} action")));
                }
            }
            Action::LabelMap if !is_valid_template(&replacement) => {
                return Err(err(
                    Some("replacement"),
                    format!("{replacement:?} is invalid 'replacement' for {a} action"),
                ));
            }
            _ => {}
        }
        if matches!(action, Action::KeepEqual | Action::DropEqual)
            && (raw.regex.is_some() || modulus != 0 || separator != DEFAULT_SEPARATOR)
        {
            return Err(err(
                None,
                format!("{a} action requires only 'source_labels' and `target_label`, and no other fields"),
            ));
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (raw.source_labels.is_some()
                || !target_label.is_empty()
                || modulus != 0
                || separator != DEFAULT_SEPARATOR
                || replacement != DEFAULT_REPLACEMENT)
        {
            return Err(err(None, format!("{a} action requires only 'regex', and no other fields")));
        }
        Ok(RelabelConfig {
            source_labels: raw.source_labels.unwrap_or_default(),
            separator,
            regex,
            modulus,
            target_label,
            replacement,
            action,
            regex_text,
        })
    }

    /// The regex as written (without the anchors).
    pub fn regex_text(&self) -> &str {
        &self.regex_text
    }
}

fn first_line(s: &str) -> String {
    // The regex crate's messages span several lines with a caret diagram; keep the last, which says why.
    s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(s).trim().to_string()
}

/// Applies the rules in order to a sorted label set. Returns false if a rule dropped the set (the labels are
/// then unspecified).
pub fn process(labels: &mut Labels, configs: &[RelabelConfig]) -> bool {
    configs.iter().all(|cfg| apply(labels, cfg))
}

fn apply(labels: &mut Labels, cfg: &RelabelConfig) -> bool {
    let value = match cfg.source_labels.as_slice() {
        [] => String::new(),
        [one] => labels::get(labels, one).to_string(),
        many => {
            let vals: Vec<&str> = many.iter().map(|n| labels::get(labels, n)).collect();
            vals.join(&cfg.separator)
        }
    };
    match cfg.action {
        Action::Drop => return !cfg.regex.is_match(&value),
        Action::Keep => return cfg.regex.is_match(&value),
        Action::DropEqual => return labels::get(labels, &cfg.target_label) != value,
        Action::KeepEqual => return labels::get(labels, &cfg.target_label) == value,
        Action::Replace => {
            let Some(caps) = cfg.regex.captures(&value) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&cfg.target_label, &mut target);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&cfg.replacement, &mut res);
            labels::set(labels, &target, &res);
        }
        Action::Lowercase => labels::set(labels, &cfg.target_label, &value.to_lowercase()),
        Action::Uppercase => labels::set(labels, &cfg.target_label, &value.to_uppercase()),
        Action::HashMod => {
            use md5::{Digest, Md5};
            let sum = Md5::digest(value.as_bytes());
            let mut last = [0u8; 8];
            last.copy_from_slice(&sum[8..16]);
            let m = u64::from_be_bytes(last) % cfg.modulus.max(1);
            labels::set(labels, &cfg.target_label, &m.to_string());
        }
        Action::LabelMap => {
            let snapshot = labels.clone();
            for (name, v) in &snapshot {
                if let Some(caps) = cfg.regex.captures(name) {
                    let mut res = String::new();
                    caps.expand(&cfg.replacement, &mut res);
                    if !res.is_empty() {
                        labels::set(labels, &res, v);
                    }
                }
            }
        }
        Action::LabelDrop => labels.retain(|(n, _)| !cfg.regex.is_match(n)),
        Action::LabelKeep => labels.retain(|(n, _)| cfg.regex.is_match(n)),
    }
    true
}

#[cfg(test)]
#[path = "relabel_test.rs"]
mod tests;
