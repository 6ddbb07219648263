//! Node-level errors and their one mapping each to HTTP status codes and gRPC statuses.

use std::path::PathBuf;

use axum::http::StatusCode;

use crate::writer::ShardWriteError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error(
        "another pharos is using the data directory {0} (its lock is held); stop it, or give this node its own \
         --data-dir"
    )]
    DataDirInUse(PathBuf),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Storage(#[from] pharos_storage::StorageError),
    #[error(transparent)]
    StorageConfig(#[from] pharos_storage::ConfigError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("the {0} group has no leader yet; retry shortly")]
    NoLeader(&'static str),
    #[error("forwarding to another node failed: {0}")]
    Forward(String),
    #[error("not supported yet: {0}")]
    Unsupported(&'static str),
}

/// Why a write failed, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the limit of {limit} bytes (limits.max_body_bytes)")]
    TooLarge { limit: usize },
    #[error("{0}; retry after a short pause")]
    Overloaded(String),
    #[error("{0}; retry shortly")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<ShardWriteError> for WriteError {
    fn from(e: ShardWriteError) -> Self {
        match e {
            ShardWriteError::Overloaded { .. } => WriteError::Overloaded(e.to_string()),
            ShardWriteError::NotLeader { .. } | ShardWriteError::Closed { .. } => {
                WriteError::Unavailable(e.to_string())
            }
            ShardWriteError::Failed { .. } => WriteError::Unavailable(e.to_string()),
        }
    }
}

impl WriteError {
    pub fn http_status(&self) -> StatusCode {
        match self {
            WriteError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WriteError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WriteError::Overloaded(_) | WriteError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WriteError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_status(&self) -> tonic::Status {
        match self {
            WriteError::BadRequest(m) => tonic::Status::invalid_argument(m.clone()),
            WriteError::TooLarge { .. } => tonic::Status::resource_exhausted(self.to_string()),
            WriteError::Overloaded(_) | WriteError::Unavailable(_) => {
                let mut s = tonic::Status::unavailable(self.to_string());
                s.metadata_mut().insert("retry-after-ms", tonic::metadata::MetadataValue::from_static("500"));
                s
            }
            WriteError::Internal(m) => tonic::Status::internal(m.clone()),
        }
    }

    /// Short code for metrics and for forwarded replies.
    pub fn code(&self) -> &'static str {
        match self {
            WriteError::BadRequest(_) => "invalid_argument",
            WriteError::TooLarge { .. } => "too_large",
            WriteError::Overloaded(_) => "overloaded",
            WriteError::Unavailable(_) => "unavailable",
            WriteError::Internal(_) => "internal",
        }
    }
}
