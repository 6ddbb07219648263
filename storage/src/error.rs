//! Errors of the storage layer. Corruption carries where it was found so an operator can cut there.

use crate::codec::CodecError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt {what} in column family {cf} at key {key:02x?}: {source}")]
    CorruptChunk {
        cf: &'static str,
        what: &'static str,
        key: Vec<u8>,
        #[source]
        source: CodecError,
    },
    #[error("corrupt {what} in column family {cf} at key {key:02x?}")]
    Corrupt { cf: &'static str, what: &'static str, key: Vec<u8> },
    #[error("snapshot: {0}")]
    Snapshot(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("retention: {0}")]
    Retention(String),
    #[error("engine: {0}")]
    Engine(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
