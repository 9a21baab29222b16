//! Sparse, fixed-width, memory-mapped indexes: [`OffsetIndex`] (`.index`) and [`TimeIndex`]
//! (`.timeindex`), after Kafka's `OffsetIndex` / `TimeIndex`.
//!
//! `.index` entry (8 bytes, big-endian): `relative_offset: u32` (last offset of a batch minus
//! the segment's base offset) then `position: u32` (byte position of that batch in `.log`).
//! `.timeindex` entry (12 bytes, big-endian): `timestamp: i64` (largest batch max timestamp
//! seen in the segment so far) then `relative_offset: u32` (base offset of the batch that
//! first reached it, minus the segment base).
//!
//! Entries are strictly increasing in both fields. The active segment's files are extended
//! to `segment.index.bytes` (sparsely) and mapped read-write; blocks are allocated a chunk at
//! a time by writing zeros with `pwrite` before the mapping is stored into, so that a full
//! disk fails that `pwrite` (the entry is skipped) and never turns into a SIGBUS; when a segment becomes inactive (roll, close) its files are trimmed to
//! the entries present. An untrimmed file therefore only ever belongs to the active segment,
//! which recovery rebuilds anyway.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapMut;

use crate::error::{IoContext, LogError};
use crate::limits::{
    INDEX_ALLOCATION_CHUNK_BYTES, OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES,
};

/// A file of fixed-width entries, mapped in memory.
pub(crate) struct MmapIndex {
    path: PathBuf,
    /// Dropped for idle sealed segments (the mapping stays valid); reopened on demand.
    file: Option<Arc<File>>,
    mmap: Option<MmapMut>,
    entry_bytes: usize,
    entries: usize,
    capacity_entries: usize,
    /// Bytes of the file known to be backed by allocated blocks.
    allocated_bytes: usize,
}

static ZEROS: [u8; INDEX_ALLOCATION_CHUNK_BYTES] = [0; INDEX_ALLOCATION_CHUNK_BYTES];

impl MmapIndex {
    /// Opens an existing (trimmed) index file; entries = file length / entry size.
    fn open(path: &Path, entry_bytes: usize) -> Result<MmapIndex, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .io_ctx("open index", path)?;
        let len = file.metadata().io_ctx("stat index", path)?.len() as usize;
        let entries = len / entry_bytes;
        let mut idx = MmapIndex {
            path: path.to_path_buf(),
            file: Some(Arc::new(file)),
            mmap: None,
            entry_bytes,
            entries,
            capacity_entries: entries,
            allocated_bytes: entries * entry_bytes,
        };
        if len % entry_bytes != 0 {
            idx.handle()?
                .set_len((entries * entry_bytes) as u64)
                .io_ctx("trim index", path)?;
        }
        idx.remap()?;
        Ok(idx)
    }

    /// The open file, reopened if it was released.
    fn handle(&mut self) -> Result<Arc<File>, LogError> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .io_ctx("reopen index", &self.path)?;
            self.file = Some(Arc::new(f));
        }
        Ok(Arc::clone(self.file.as_ref().unwrap()))
    }

    /// Closes the descriptor of a sealed index; lookups keep using the mapping.
    pub(crate) fn release_file(&mut self) {
        self.file = None;
    }

    fn remap(&mut self) -> Result<(), LogError> {
        self.mmap = None;
        let len = self.capacity_entries * self.entry_bytes;
        if len > 0 {
            let file = self.handle()?;
            // SAFETY: the file is owned by this partition directory, which only this process
            // writes (one PartitionLog per directory); we never shrink the file while mapped.
            let m = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&*file) }
                .io_ctx("mmap index", &self.path)?;
            self.mmap = Some(m);
        }
        Ok(())
    }

    /// Extends the file (sparsely) to `capacity_bytes` and maps it for appends. Blocks are
    /// allocated by `push`, a chunk at a time, with `pwrite`, before the mapping touches them.
    fn activate(&mut self, capacity_bytes: u32) -> Result<(), LogError> {
        let capacity = (capacity_bytes as usize / self.entry_bytes)
            .max(self.entries)
            .max(1);
        self.mmap = None;
        let used = (self.entries * self.entry_bytes) as u64;
        let file = self.handle()?;
        // Cut garbage past the entries (a crash leaves the old preallocation), then extend.
        file.set_len(used).io_ctx("truncate index", &self.path)?;
        file.set_len((capacity * self.entry_bytes) as u64)
            .io_ctx("extend index", &self.path)?;
        self.allocated_bytes = used as usize;
        self.capacity_entries = capacity;
        self.remap()
    }

    /// Trims the file to the entries present and maps only those.
    fn seal(&mut self) -> Result<(), LogError> {
        self.mmap = None;
        self.capacity_entries = self.entries;
        self.handle()?
            .set_len((self.entries * self.entry_bytes) as u64)
            .io_ctx("trim index", &self.path)?;
        self.remap()
    }

    fn entry(&self, i: usize) -> &[u8] {
        assert!(i < self.entries);
        let m = self.mmap.as_ref().expect("an index with entries is mapped");
        &m[i * self.entry_bytes..(i + 1) * self.entry_bytes]
    }

    /// Appends an entry. Returns false, appending nothing, when the index is full or the
    /// disk has no room for the next chunk (an index entry is only an optimisation: lookups
    /// scan forward from the previous one).
    fn push(&mut self, bytes: &[u8]) -> bool {
        assert_eq!(bytes.len(), self.entry_bytes);
        if self.entries >= self.capacity_entries {
            return false;
        }
        let at = self.entries * self.entry_bytes;
        let end = at + bytes.len();
        let capacity_bytes = self.capacity_entries * self.entry_bytes;
        while end > self.allocated_bytes {
            let n = INDEX_ALLOCATION_CHUNK_BYTES.min(capacity_bytes - self.allocated_bytes);
            // Writing zeros allocates the blocks now, so that a full disk is an error here
            // and never a SIGBUS when the mapping is stored into.
            let file = self.file.as_ref().expect("an active index keeps its file");
            if let Err(e) = file.write_all_at(&ZEROS[..n], self.allocated_bytes as u64) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot grow index; entry skipped");
                return false;
            }
            self.allocated_bytes += n;
        }
        let m = self.mmap.as_mut().expect("an active index is mapped");
        m[at..end].copy_from_slice(bytes);
        self.entries += 1;
        true
    }

    fn is_full(&self) -> bool {
        self.entries >= self.capacity_entries
    }

    /// Largest `i` with `le(entry(i))`, assuming `le` is monotone (true then false).
    fn last_matching(&self, le: impl Fn(&[u8]) -> bool) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if le(self.entry(mid)) {
                lo = mid + 1
            } else {
                hi = mid
            }
        }
        lo.checked_sub(1)
    }

    /// The descriptor, unless released.
    pub(crate) fn file(&self) -> Option<&Arc<File>> {
        self.file.as_ref()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    fn clear(&mut self) {
        self.entries = 0;
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// `.index`: last offset of a batch → byte position of the batch.
pub(crate) struct OffsetIndex {
    pub(crate) base_offset: i64,
    pub(crate) inner: MmapIndex,
}

impl OffsetIndex {
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<OffsetIndex, LogError> {
        Ok(OffsetIndex {
            base_offset,
            inner: MmapIndex::open(path, OFFSET_INDEX_ENTRY_BYTES)?,
        })
    }

    pub(crate) fn activate(&mut self, capacity_bytes: u32) -> Result<(), LogError> {
        self.inner.activate(capacity_bytes)
    }

    pub(crate) fn seal(&mut self) -> Result<(), LogError> {
        self.inner.seal()
    }

    pub(crate) fn entry(&self, i: usize) -> (i64, u32) {
        let e = self.inner.entry(i);
        (self.base_offset + u32_at(e, 0) as i64, u32_at(e, 4))
    }

    pub(crate) fn last(&self) -> Option<(i64, u32)> {
        self.inner.len().checked_sub(1).map(|i| self.entry(i))
    }

    pub(crate) fn push(&mut self, offset: i64, position: u32) -> bool {
        let rel = offset - self.base_offset;
        assert!((0..=u32::MAX as i64).contains(&rel));
        if let Some((last, last_pos)) = self.last() {
            assert!(
                offset > last && position > last_pos,
                "offset index entries must increase"
            );
        }
        let mut e = [0u8; OFFSET_INDEX_ENTRY_BYTES];
        e[..4].copy_from_slice(&(rel as u32).to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        self.inner.push(&e)
    }

    /// Position of the batch holding the largest indexed offset `<= target` (0 if none): a
    /// safe place to start scanning for `target`.
    pub(crate) fn lookup(&self, target: i64) -> u32 {
        let base = self.base_offset;
        self.inner
            .last_matching(|e| base + u32_at(e, 0) as i64 <= target)
            .map_or(0, |i| self.entry(i).1)
    }

    /// Drops entries whose batch starts at or after `position`.
    pub(crate) fn truncate_to_position(&mut self, position: u64) {
        let keep = self
            .inner
            .last_matching(|e| (u32_at(e, 4) as u64) < position)
            .map_or(0, |i| i + 1);
        self.inner.entries = keep;
    }

    pub(crate) fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    pub(crate) fn clear(&mut self) {
        self.inner.clear()
    }
}

/// `.timeindex`: max timestamp so far → offset of the batch that reached it.
pub(crate) struct TimeIndex {
    pub(crate) base_offset: i64,
    pub(crate) inner: MmapIndex,
}

impl TimeIndex {
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<TimeIndex, LogError> {
        Ok(TimeIndex {
            base_offset,
            inner: MmapIndex::open(path, TIME_INDEX_ENTRY_BYTES)?,
        })
    }

    pub(crate) fn activate(&mut self, capacity_bytes: u32) -> Result<(), LogError> {
        self.inner.activate(capacity_bytes)
    }

    pub(crate) fn seal(&mut self) -> Result<(), LogError> {
        self.inner.seal()
    }

    pub(crate) fn entry(&self, i: usize) -> (i64, i64) {
        let e = self.inner.entry(i);
        let ts = i64::from_be_bytes(e[..8].try_into().unwrap());
        (ts, self.base_offset + u32_at(e, 8) as i64)
    }

    pub(crate) fn last(&self) -> Option<(i64, i64)> {
        self.inner.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends `(timestamp, offset)` if `timestamp` is larger than the last entry's. Returns
    /// false (and appends nothing) when full.
    pub(crate) fn maybe_push(&mut self, timestamp: i64, offset: i64) -> bool {
        if let Some((last_ts, _)) = self.last() {
            if timestamp <= last_ts {
                return true;
            }
        }
        let rel = offset - self.base_offset;
        assert!((0..=u32::MAX as i64).contains(&rel));
        let mut e = [0u8; TIME_INDEX_ENTRY_BYTES];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&(rel as u32).to_be_bytes());
        self.inner.push(&e)
    }

    /// The last entry with timestamp `< target`: every batch before that entry was written
    /// has a max timestamp `< target`, so a scan for `target` may start at its offset.
    pub(crate) fn lookup_before(&self, target: i64) -> Option<(i64, i64)> {
        self.inner
            .last_matching(|e| i64::from_be_bytes(e[..8].try_into().unwrap()) < target)
            .map(|i| self.entry(i))
    }

    /// Drops entries whose offset is `>= offset`.
    pub(crate) fn truncate_to_offset(&mut self, offset: i64) {
        let base = self.base_offset;
        let keep = self
            .inner
            .last_matching(|e| base + (u32_at(e, 8) as i64) < offset)
            .map_or(0, |i| i + 1);
        self.inner.entries = keep;
    }

    pub(crate) fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    pub(crate) fn clear(&mut self) {
        self.inner.clear()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_and_trim() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::open(&p, 100).unwrap();
        idx.activate(80).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 80);
        assert_eq!(idx.inner.allocated_bytes, 0, "sparse until entries arrive");
        for i in 0..5 {
            idx.push(100 + 10 * i + 9, 1000 * i as u32 + 500);
        }
        assert_eq!(idx.lookup(99), 0);
        assert_eq!(idx.lookup(108), 0);
        assert_eq!(idx.lookup(109), 500);
        assert_eq!(idx.lookup(125), 1500);
        assert_eq!(idx.lookup(10_000), 4500);
        idx.seal().unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 40);
        drop(idx);
        let mut idx = OffsetIndex::open(&p, 100).unwrap();
        assert_eq!(idx.last(), Some((149, 4500)));
        idx.truncate_to_position(2500);
        assert_eq!(idx.last(), Some((119, 1500)));
        idx.activate(80).unwrap();
        assert!(!idx.is_full());
        idx.push(200, 9000);
        assert_eq!(idx.lookup(300), 9000);
    }

    #[test]
    fn time_index_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("00000000000000000000.timeindex");
        let mut idx = TimeIndex::open(&p, 0).unwrap();
        idx.activate(36).unwrap();
        assert!(idx.maybe_push(10, 0));
        assert_eq!(idx.inner.allocated_bytes, 36);
        assert!(idx.maybe_push(10, 5)); // not larger: skipped
        assert!(idx.maybe_push(20, 7));
        assert!(idx.maybe_push(30, 9));
        assert!(!idx.maybe_push(40, 11)); // full
        assert_eq!(idx.lookup_before(10), None);
        assert_eq!(idx.lookup_before(11), Some((10, 0)));
        assert_eq!(idx.lookup_before(25), Some((20, 7)));
        idx.truncate_to_offset(8);
        assert_eq!(idx.last(), Some((20, 7)));
    }
}
