//! Alerting on the node: rule files are validated here and stored in the meta group. (Evaluation by a
//! leader-run actor per rule group, Raft-kept alert state and notification delivery come next; the logic
//! lives in pharos-alert.)

/// Checks a rule file: its shape, durations, labels, templates, and that every `expr` plans as a query.
/// Returns the number of groups and rules, or every problem found (with line numbers, and the file name
/// when given).
pub fn validate(file: Option<&str>, text: &str) -> Result<(usize, usize), String> {
    let parsed = match file {
        Some(f) => pharos_alert::rules::parse_rule_file_named(f, text),
        None => pharos_alert::rules::parse_rule_file(text),
    };
    match parsed {
        Ok(file) => Ok((file.groups.len(), file.groups.iter().map(|g| g.rules.len()).sum())),
        Err(errors) => Err(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")),
    }
}
