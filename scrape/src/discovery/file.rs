//! file_sd: target groups from JSON or YAML files, found by glob, re-read when they change.
//!
//! Every poll (the shorter of `refresh_interval` and the poll interval, 5s by default) the patterns are
//! expanded and each file's modification time and size are compared with those of its last read; changed
//! files are re-read, and every `refresh_interval` all of them are. A file that cannot be read or parsed is
//! logged once per change and keeps the groups of its last good read; a file that no longer exists loses
//! its groups. The file system work runs on tokio's blocking pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, warn};

use super::{to_groups, JsonGroup, Publisher, TargetGroup, YamlGroup};
use crate::config::FileSdConfig;

/// The label holding the file a group came from.
pub const META_FILEPATH: &str = "__meta_filepath";

#[derive(Debug, Default)]
struct FileState {
    /// Modification time and size at the last read (good or bad).
    stamp: Option<(SystemTime, u64)>,
    /// Groups of the last good read.
    groups: Vec<TargetGroup>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, FileState>,
}

pub(crate) async fn run(cfg: FileSdConfig, poll: Duration, out: Publisher) {
    let poll = cfg.refresh_interval.min(poll).max(Duration::from_millis(10));
    let mut state = State::default();
    let mut last_full: Option<Instant> = None;
    loop {
        let full = last_full.is_none_or(|t| t.elapsed() >= cfg.refresh_interval);
        if full {
            last_full = Some(Instant::now());
        }
        let patterns = cfg.files.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            scan(&mut state, &patterns, full);
            state
        })
        .await;
        // If the scan panicked or was cancelled, start over on the next poll.
        state = scanned.unwrap_or_default();
        out.publish(state.files.values().flat_map(|f| f.groups.iter().cloned()).collect());
        tokio::time::sleep(poll).await;
    }
}

/// Lists the files matching the patterns, re-reads the changed ones (all of them if `full`).
fn scan(state: &mut State, patterns: &[String], full: bool) {
    let mut present = Vec::new();
    for pattern in patterns {
        match glob::glob(pattern) {
            Ok(paths) => {
                for p in paths {
                    match p {
                        Ok(p) => present.push(p),
                        Err(e) => warn!(pattern = %pattern, error = %e, "file_sd: cannot list a path"),
                    }
                }
            }
            Err(e) => warn!(pattern = %pattern, error = %e, "file_sd: invalid pattern"),
        }
    }
    present.sort();
    present.dedup();
    state.files.retain(|p, _| present.binary_search(p).is_ok());
    for path in present {
        let stamp = std::fs::metadata(&path).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let entry = state.files.entry(path.clone()).or_default();
        if !full && stamp.is_some() && entry.stamp == stamp {
            continue;
        }
        entry.stamp = stamp;
        match read_groups(&path) {
            Ok(groups) => {
                debug!(file = %path.display(), groups = groups.len(), "file_sd: read");
                entry.groups = groups;
            }
            Err(e) => warn!(
                file = %path.display(),
                error = %e,
                kept_groups = entry.groups.len(),
                "file_sd: cannot read targets file; keeping its last good groups"
            ),
        }
    }
}

/// Reads one file: JSON for `.json`, YAML otherwise.
fn read_groups(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let name = path.display().to_string();
    let is_json = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let entries: Vec<Option<JsonGroup>> = if is_json {
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())?
    } else {
        let text = std::str::from_utf8(&bytes).map_err(|e| e.to_string())?;
        let groups: Option<Vec<Option<YamlGroup>>> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        groups.unwrap_or_default().into_iter().map(|g| g.map(JsonGroup::from)).collect()
    };
    to_groups(entries, &name, (META_FILEPATH, &name))
}
