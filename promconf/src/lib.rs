//! What Pharos's Prometheus-shaped configuration parsers share: the rule and routing files of pharos-alert
//! and the scrape configuration of pharos-scrape.
//!
//! | module       | what                                                                           |
//! |--------------|--------------------------------------------------------------------------------|
//! | [`duration`] | Prometheus durations (`1h30m`, `15s`, `500ms`), parsed and printed canonically |
//! | [`yamlpos`]  | line numbers of YAML entries by path, for error messages                       |
//! | [`http`]     | outgoing requests' credentials: `authorization`, `basic_auth`, `bearer_token`  |
//! | [`redact`]   | configurations with their secrets replaced, for readers who may not see them   |

pub mod duration;
pub mod http;
pub mod redact;
pub mod yamlpos;

pub use duration::{DurationError, PromDuration};
