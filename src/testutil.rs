//! What unit tests share (compiled for tests only).

use std::path::PathBuf;

/// A file in the temp directory, removed on drop.
pub struct TempFile(PathBuf);

impl TempFile {
    /// A new file holding `content`; `name` ends its file name.
    pub fn with(name: &str, content: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "fabric-test-{}-{}-{name}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
