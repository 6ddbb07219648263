//! Where snapshots wait while they travel: anonymous temporary files in one directory of the node's data
//! directory (never /tmp, which may be memory). The system deletes each file when it is closed, also after a
//! crash, so nothing is left to clean up.

use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Spool {
    dir: Arc<PathBuf>,
}

impl Spool {
    /// A spool in `dir`, created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Spool> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Spool { dir: Arc::new(dir) })
    }

    /// A new empty file, gone once closed.
    pub fn file(&self) -> std::io::Result<std::fs::File> {
        tempfile::tempfile_in(&*self.dir)
    }
}

impl Spool {
    /// A spool file holding `bytes`, positioned at its start (small snapshots: the meta group's).
    pub async fn file_with(&self, bytes: &[u8]) -> std::io::Result<tokio::fs::File> {
        use tokio::io::{AsyncSeekExt, AsyncWriteExt};
        let mut f = tokio::fs::File::from_std(self.file()?);
        f.write_all(bytes).await?;
        f.flush().await?;
        f.seek(std::io::SeekFrom::Start(0)).await?;
        Ok(f)
    }
}

/// The file openraft wrote a received snapshot into, flushed and positioned at its start.
pub async fn received(mut f: tokio::fs::File) -> std::io::Result<std::fs::File> {
    use std::io::Seek;
    use tokio::io::AsyncWriteExt;
    f.flush().await?;
    let mut f = f.into_std().await;
    f.rewind()?;
    Ok(f)
}
