//! The one place that forces bytes to stable storage, so that fuzzing can turn it off.

use std::fs::File;

/// fdatasync / fsync, unless a fuzz run switched durability off.
pub(crate) trait Fsync {
    /// `fdatasync`: the file's data and the metadata needed to read it (its size).
    fn fsync(&self) -> std::io::Result<()>;
    /// `fsync`: everything, used for directories and markers.
    fn fsync_all(&self) -> std::io::Result<()>;
}

#[cfg(any(test, feature = "testutil"))]
pub(crate) static SKIP_FSYNC: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn skipped() -> bool {
    #[cfg(any(test, feature = "testutil"))]
    if SKIP_FSYNC.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    false
}

impl Fsync for File {
    fn fsync(&self) -> std::io::Result<()> {
        if skipped() { Ok(()) } else { self.sync_data() }
    }

    fn fsync_all(&self) -> std::io::Result<()> {
        if skipped() { Ok(()) } else { self.sync_all() }
    }
}
