//! One segment: a `.log` file of whole batches plus its `.index` and `.timeindex`
//! (Kafka's `LogSegment`).
//!
//! Invariants: `size` is the number of valid bytes (everything past it is garbage from a failed
//! write and is overwritten by the next append); every batch in `[0, size)` has passed header
//! and CRC checks when it was appended or recovered; batches' offsets strictly increase and are
//! `>= base_offset`; index entries only point at batch starts below `size`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::batch::{BATCH_HEADER_LEN, BatchHeader, compute_crc};
use crate::error::{IoContext, LogError};
use crate::index::{OffsetIndex, TimeIndex};
use crate::limits::{LOG_OVERHEAD_BYTES, RECOVERY_READ_CHUNK_BYTES, RELATIVE_OFFSET_MAX};
use crate::txn_index::TransactionIndex;

/// `<20-digit zero-padded base offset>.<ext>`.
pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

pub(crate) struct LogSegment {
    pub(crate) base_offset: i64,
    pub(crate) log_path: PathBuf,
    /// The `.log` descriptor: always open for the active segment, opened on demand and
    /// released when idle for the others (see `PartitionLog::release_idle_handles`).
    handle: Mutex<Option<Arc<File>>>,
    /// Set by every access to `file()`; cleared by the idle sweep.
    touched: AtomicBool,
    pub(crate) size: u64,
    pub(crate) offset_index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    /// `<base>.txnindex`: the aborted transactions whose marker is in this segment.
    pub(crate) txn_index: TransactionIndex,
    pub(crate) bytes_since_last_index_entry: u64,
    /// Largest batch max timestamp in the segment (-1 if none).
    pub(crate) max_timestamp: i64,
    /// Base offset of the first batch that reached `max_timestamp`.
    pub(crate) offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch (for `segment.ms`), if known.
    pub(crate) first_batch_timestamp: Option<i64>,
    pub(crate) active: bool,
}

/// How a scan of a segment ended.
pub(crate) struct ScanEnd {
    /// Byte position after the last valid batch.
    pub(crate) valid_bytes: u64,
    /// Offset after the last valid batch (`None` if no batch was scanned).
    pub(crate) next_offset: Option<i64>,
    /// Why the scan stopped before the end of the file, if it did.
    pub(crate) error: Option<String>,
}

/// Reads a file sequentially through a reusable buffer.
struct ChunkReader<'a> {
    file: &'a File,
    path: &'a Path,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> ChunkReader<'a> {
    /// `len` bytes at `pos` (the caller checked `pos + len <= end`).
    fn get(&mut self, pos: u64, len: usize) -> Result<&[u8], LogError> {
        assert!(pos + len as u64 <= self.end);
        let buf_end = self.buf_start + self.buf.len() as u64;
        if pos < self.buf_start || pos + len as u64 > buf_end {
            let want = (len.max(RECOVERY_READ_CHUNK_BYTES) as u64).min(self.end - pos) as usize;
            self.buf.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buf, pos)
                .io_ctx("read segment", self.path)?;
            self.buf_start = pos;
        }
        let at = (pos - self.buf_start) as usize;
        Ok(&self.buf[at..at + len])
    }
}

impl LogSegment {
    /// The `.log` file, reopened if its descriptor was released.
    pub(crate) fn file(&self) -> Result<Arc<File>, LogError> {
        self.touched.store(true, Ordering::Relaxed);
        let mut h = self.handle.lock().unwrap_or_else(|e| e.into_inner());
        if h.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.log_path)
                .io_ctx("reopen segment", &self.log_path)?;
            *h = Some(Arc::new(f));
        }
        Ok(Arc::clone(h.as_ref().unwrap()))
    }

    /// Forgets accesses so far (the next idle sweep may release the descriptor).
    pub(crate) fn touched_reset(&self) {
        self.touched.store(false, Ordering::Relaxed);
    }

    /// Whether the `.log` descriptor is open now.
    pub(crate) fn has_open_file(&self) -> bool {
        self.handle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Closes the descriptors of a sealed segment not accessed since the last call (the
    /// index descriptors unconditionally: the mappings stay). Returns descriptors closed.
    pub(crate) fn release_if_idle(&mut self) -> usize {
        assert!(!self.active, "the active segment keeps its files");
        let mut closed = 0;
        for idx in [&mut self.offset_index.inner, &mut self.time_index.inner] {
            if idx.file().is_some() {
                idx.release_file();
                closed += 1;
            }
        }
        if self.txn_index.release_file() {
            closed += 1;
        }
        if !self.touched.swap(false, Ordering::Relaxed) {
            let h = self.handle.get_mut().unwrap_or_else(|e| e.into_inner());
            if h.take().is_some() {
                closed += 1;
            }
        }
        closed
    }

    /// Creates a new, empty, active segment (replacing any file of the same name).
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        index_bytes: u32,
    ) -> Result<LogSegment, LogError> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .io_ctx("create segment", &log_path)?;
        let index_path = dir.join(file_name(base_offset, "index"));
        let time_path = dir.join(file_name(base_offset, "timeindex"));
        for p in [&index_path, &time_path] {
            File::create(p).io_ctx("create index", p)?;
        }
        let mut seg = LogSegment {
            base_offset,
            log_path,
            handle: Mutex::new(Some(Arc::new(file))),
            touched: AtomicBool::new(true),
            size: 0,
            offset_index: OffsetIndex::open(&index_path, base_offset)?,
            time_index: TimeIndex::open(&time_path, base_offset)?,
            txn_index: TransactionIndex::create(dir.join(file_name(base_offset, "txnindex")))?,
            bytes_since_last_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
            active: false,
        };
        seg.activate(index_bytes)?;
        Ok(seg)
    }

    /// Opens an existing segment as inactive, trusting its (trimmed) index files. The caller
    /// decides whether to `sanity_check` or `recover` it.
    pub(crate) fn open(dir: &Path, base_offset: i64) -> Result<LogSegment, LogError> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .io_ctx("open segment", &log_path)?;
        let size = file.metadata().io_ctx("stat segment", &log_path)?.len();
        let offset_index =
            OffsetIndex::open(&dir.join(file_name(base_offset, "index")), base_offset)?;
        let time_index =
            TimeIndex::open(&dir.join(file_name(base_offset, "timeindex")), base_offset)?;
        let (max_timestamp, offset_of_max_timestamp) =
            time_index.last().unwrap_or((-1, base_offset));
        Ok(LogSegment {
            base_offset,
            log_path,
            handle: Mutex::new(Some(Arc::new(file))),
            touched: AtomicBool::new(true),
            size,
            offset_index,
            time_index,
            txn_index: TransactionIndex::load(dir.join(file_name(base_offset, "txnindex")))?,
            bytes_since_last_index_entry: 0,
            max_timestamp,
            offset_of_max_timestamp,
            first_batch_timestamp: None,
            active: false,
        })
    }

    /// Cheap checks of a segment loaded without a scan: index entries point inside the file
    /// and the first batch header is readable. `Err` means "rebuild by scanning".
    pub(crate) fn sanity_check(&self) -> Result<(), String> {
        if self.size > crate::limits::SEGMENT_BYTES_MAX as u64 {
            return Err(format!(
                "{} bytes is over the segment size limit",
                self.size
            ));
        }
        if let Some((off, pos)) = self.offset_index.last() {
            if off < self.base_offset || pos as u64 >= self.size {
                return Err(format!(
                    "offset index entry ({off}, {pos}) out of the segment"
                ));
            }
            let h = self.read_header_at(pos as u64).map_err(|e| e.to_string())?;
            if h.last_offset() != off {
                return Err(format!(
                    "offset index says {off} at {pos}, batch there ends at {}",
                    h.last_offset()
                ));
            }
        }
        // A crash can leave an untrimmed file whose tail is zeros: the last two entries then
        // do not increase.
        let n = self.offset_index.inner.len();
        if n >= 2 {
            let (a, b) = (
                self.offset_index.entry(n - 2),
                self.offset_index.entry(n - 1),
            );
            if !(a.0 < b.0 && a.1 < b.1) {
                return Err(format!("offset index entries {a:?}, {b:?} do not increase"));
            }
        }
        let n = self.time_index.inner.len();
        if n >= 2 {
            let (a, b) = (self.time_index.entry(n - 2), self.time_index.entry(n - 1));
            if !(a.0 < b.0 && a.1 < b.1) {
                return Err(format!("time index entries {a:?}, {b:?} do not increase"));
            }
        }
        if self.size > 0 && self.time_index.last().is_none() {
            // Every sealed segment with timestamps ends with a time-index entry; none means
            // the index files are missing (e.g. a crash during a cleaner swap).
            return Err("no time index entry for a non-empty segment".into());
        }
        if let Some((_, off)) = self.time_index.last() {
            if off < self.base_offset {
                return Err(format!(
                    "time index entry offset {off} below the base offset"
                ));
            }
        }
        Ok(())
    }

    /// Makes the segment the active one: index files preallocated and mapped read-write.
    pub(crate) fn activate(&mut self, index_bytes: u32) -> Result<(), LogError> {
        self.offset_index.activate(index_bytes)?;
        self.time_index.activate(index_bytes)?;
        self.active = true;
        Ok(())
    }

    /// Makes the segment inactive: records a final time-index entry for the max timestamp (so
    /// a clean open learns it without a scan) and trims the index files.
    pub(crate) fn seal(&mut self) -> Result<(), LogError> {
        if self.max_timestamp >= 0 {
            // A full time index keeps its last entry; the segment's max timestamp is then
            // only approximate after reopening, which retention tolerates.
            let _ = self
                .time_index
                .maybe_push(self.max_timestamp, self.offset_of_max_timestamp);
        }
        self.offset_index.seal()?;
        self.time_index.seal()?;
        self.active = false;
        Ok(())
    }

    /// True when appending `bytes` more would not fit or the indexes are full or the relative
    /// offsets would overflow.
    pub(crate) fn should_roll(&self, bytes: usize, segment_bytes: u32, last_offset: i64) -> bool {
        self.size > 0
            && (self.size + bytes as u64 > segment_bytes as u64
                || self.offset_index.is_full()
                || self.time_index.is_full()
                || last_offset - self.base_offset > RELATIVE_OFFSET_MAX)
    }

    /// Reads and parses the header at `pos`.
    pub(crate) fn read_header_at(&self, pos: u64) -> Result<BatchHeader, LogError> {
        if pos + BATCH_HEADER_LEN as u64 > self.size {
            return Err(self.corrupt(pos, "batch header extends past the end of the segment"));
        }
        let mut buf = [0u8; BATCH_HEADER_LEN];
        self.file()?
            .read_exact_at(&mut buf, pos)
            .io_ctx("read segment", &self.log_path)?;
        let h = BatchHeader::parse(&buf).map_err(|e| self.corrupt(pos, e.to_string()))?;
        if pos + h.total_len() as u64 > self.size {
            return Err(self.corrupt(pos, "batch extends past the end of the segment"));
        }
        Ok(h)
    }

    pub(crate) fn corrupt(&self, pos: u64, reason: impl Into<String>) -> LogError {
        LogError::CorruptSegment {
            path: self.log_path.clone(),
            position: pos,
            reason: reason.into(),
        }
    }

    /// Records one appended (or recovered) batch at `pos` in the indexes.
    fn index_batch(&mut self, h: &BatchHeader, pos: u64, index_interval_bytes: u32) {
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(h.max_timestamp);
        }
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.base_offset;
        }
        if self.bytes_since_last_index_entry > index_interval_bytes as u64
            && self.offset_index.push(h.last_offset(), pos as u32)
        {
            let _ = self
                .time_index
                .maybe_push(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += h.total_len() as u64;
    }

    /// Writes already-validated batches at the end of the segment and indexes them. On an
    /// I/O error (ENOSPC, short write) nothing is indexed and `size` is unchanged: the partial
    /// bytes past `size` are cut (best effort) and in any case overwritten by the next append.
    ///
    /// With patched headers (the leader's path), each batch is written as its patched header
    /// followed by the rest of the batch from the received bytes.
    pub(crate) fn append(
        &mut self,
        bytes: &crate::log::AppendBytes<'_>,
        headers: &[(BatchHeader, usize)],
        index_interval_bytes: u32,
    ) -> Result<(), LogError> {
        let buf = bytes.records;
        assert!(self.active);
        assert!(self.size + buf.len() as u64 <= crate::limits::SEGMENT_BYTES_MAX as u64);
        let file = self.file()?;
        let written = match bytes.patched_headers {
            None => write_at(&file, &[buf], self.size),
            Some(patched) => {
                assert_eq!(patched.len(), headers.len(), "one patched header per batch");
                let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * headers.len());
                for ((h, at), header) in headers.iter().zip(patched) {
                    parts.push(header);
                    parts.push(&buf[*at + BATCH_HEADER_LEN..*at + h.total_len()]);
                }
                debug_assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), buf.len());
                write_at(&file, &parts, self.size)
            }
        };
        if let Err(e) = written {
            let _ = file.set_len(self.size);
            return Err(LogError::Io {
                op: "append",
                path: self.log_path.clone(),
                source: e,
            });
        }
        let start = self.size;
        for (h, at) in headers {
            self.index_batch(h, start + *at as u64, index_interval_bytes);
        }
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Rebuilds both indexes from a full scan and truncates the file after the last valid
    /// batch. Returns the scan result (its `error` says what was cut) and the bytes cut.
    pub(crate) fn recover(
        &mut self,
        prev_next_offset: i64,
        index_interval_bytes: u32,
        index_bytes: u32,
    ) -> Result<(ScanEnd, u64), LogError> {
        self.recover_with(
            prev_next_offset,
            index_interval_bytes,
            index_bytes,
            |_, _| {},
        )
    }

    /// [`LogSegment::recover`], also calling `on_batch` with the header of every valid batch,
    /// in order (the producer-state replay rides on the recovery scan).
    pub(crate) fn recover_with(
        &mut self,
        prev_next_offset: i64,
        index_interval_bytes: u32,
        index_bytes: u32,
        mut on_batch: impl FnMut(&BatchHeader, &[u8]),
    ) -> Result<(ScanEnd, u64), LogError> {
        self.offset_index.clear();
        self.time_index.clear();
        // Rebuild into a mapping large enough for every entry (trimmed again by `seal`).
        self.offset_index.activate(index_bytes)?;
        self.time_index.activate(index_bytes)?;
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        self.first_batch_timestamp = None;
        let file = self.file()?;
        let path = self.log_path.clone();
        let end = scan_file(
            &file,
            &path,
            self.base_offset,
            0,
            prev_next_offset,
            |h, pos, bytes| {
                self.index_batch(h, pos, index_interval_bytes);
                on_batch(h, bytes);
                Ok(())
            },
        )?;
        let file_len = file
            .metadata()
            .io_ctx("stat segment", &self.log_path)?
            .len();
        let cut = file_len - end.valid_bytes;
        if cut > 0 {
            file.set_len(end.valid_bytes)
                .io_ctx("truncate segment", &self.log_path)?;
        }
        self.size = end.valid_bytes;
        Ok((end, cut))
    }

    /// Scans from the last offset-index entry to the end: the next offset of a segment that
    /// was closed cleanly, and its max timestamp, in O(index interval) bytes.
    pub(crate) fn load_tail(&mut self) -> Result<ScanEnd, LogError> {
        let from = self.offset_index.last().map_or(0, |(_, pos)| pos as u64);
        let file = self.file()?;
        let path = self.log_path.clone();
        // Since the last index entry (or the segment start) `index_batch` has counted every
        // batch, including the indexed one.
        self.bytes_since_last_index_entry = 0;
        let end = scan_file(
            &file,
            &path,
            self.base_offset,
            from,
            self.base_offset,
            |h, _, _| {
                if h.max_timestamp > self.max_timestamp {
                    self.max_timestamp = h.max_timestamp;
                    self.offset_of_max_timestamp = h.base_offset;
                }
                self.bytes_since_last_index_entry += h.total_len() as u64;
                Ok(())
            },
        )?;
        if self.size > 0 && self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(self.read_header_at(0)?.max_timestamp);
        }
        Ok(end)
    }

    /// Position of the first batch whose last offset is `>= offset` (and its header), or
    /// `None` if every batch ends before `offset`.
    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let mut pos = self.offset_index.lookup(offset) as u64;
        while pos + (LOG_OVERHEAD_BYTES as u64) <= self.size {
            let h = self.read_header_at(pos)?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Cuts the segment so that it ends before the batch at `pos`; indexes follow.
    pub(crate) fn truncate_to_position(&mut self, pos: u64) -> Result<(), LogError> {
        assert!(pos <= self.size);
        self.file()?
            .set_len(pos)
            .io_ctx("truncate segment", &self.log_path)?;
        self.size = pos;
        Ok(())
    }

    pub(crate) fn index_paths(&self) -> [PathBuf; 2] {
        [
            self.offset_index.inner.path().to_path_buf(),
            self.time_index.inner.path().to_path_buf(),
        ]
    }

    /// Every file of the segment that exists: `.log`, `.index`, `.timeindex` and, once it
    /// holds an entry, `.txnindex` (for removal and renaming).
    pub(crate) fn all_paths(&self) -> Vec<PathBuf> {
        let mut v = vec![self.log_path.clone()];
        v.extend(self.index_paths());
        if self.txn_index.path().exists() {
            v.push(self.txn_index.path().to_path_buf());
        }
        v
    }

    /// Every open file of the segment, for fsync.
    pub(crate) fn files(&self) -> Result<Vec<Arc<File>>, LogError> {
        let mut v = vec![self.file()?];
        for f in [
            self.offset_index.inner.file(),
            self.time_index.inner.file(),
            self.txn_index.file(),
        ] {
            v.extend(f.cloned());
        }
        Ok(v)
    }
}

/// Scans `[from, file end)` of a segment file batch by batch, verifying headers, CRCs and
/// increasing offsets (`prev_next_offset` is the smallest acceptable base offset). Calls
/// `on_batch` for each valid batch with its header, position and bytes. Stops at the first
/// invalid or incomplete batch. Allocation is bounded by the file size.
pub(crate) fn scan_file(
    file: &File,
    path: &Path,
    base_offset: i64,
    from: u64,
    prev_next_offset: i64,
    mut on_batch: impl FnMut(&BatchHeader, u64, &[u8]) -> Result<(), LogError>,
) -> Result<ScanEnd, LogError> {
    let end = file.metadata().io_ctx("stat segment", path)?.len();
    let mut r = ChunkReader {
        file,
        path,
        end,
        buf: Vec::new(),
        buf_start: 0,
    };
    let mut pos = from;
    let mut next_offset = None;
    let mut expected = prev_next_offset.max(base_offset);
    let error = loop {
        if pos == end {
            break None;
        }
        if end - pos < BATCH_HEADER_LEN as u64 {
            break Some(format!(
                "{} trailing bytes, shorter than a batch header",
                end - pos
            ));
        }
        let h = match BatchHeader::parse(r.get(pos, BATCH_HEADER_LEN)?) {
            Ok(h) => h,
            Err(e) => break Some(e.to_string()),
        };
        let total = h.total_len() as u64;
        if pos + total > end {
            break Some(format!(
                "torn batch: needs {total} bytes, {} remain",
                end - pos
            ));
        }
        if h.base_offset < expected {
            break Some(format!(
                "base offset {} below the expected {expected}",
                h.base_offset
            ));
        }
        if h.last_offset() - base_offset > RELATIVE_OFFSET_MAX {
            break Some(format!(
                "offset {} too far from the segment base",
                h.last_offset()
            ));
        }
        let bytes = r.get(pos, total as usize)?;
        let crc = compute_crc(bytes);
        if crc != h.crc {
            break Some(format!(
                "CRC-32C mismatch: stored {:#010x}, computed {crc:#010x}",
                h.crc
            ));
        }
        on_batch(&h, pos, bytes)?;
        expected = h.last_offset() + 1;
        next_offset = Some(expected);
        pos += total;
    };
    Ok(ScanEnd {
        valid_bytes: pos,
        next_offset,
        error,
    })
}

#[cfg(any(test, feature = "testutil"))]
thread_local! {
    /// Fault injection for tests: the next segment append on this thread writes only this many
    /// bytes and then fails with ENOSPC (a short write).
    pub(crate) static FAIL_NEXT_WRITE_AFTER: std::cell::Cell<Option<usize>> =
        const { std::cell::Cell::new(None) };
}

/// Writes `parts`, one after the other, at `pos`, with `pwritev`: one system call for a
/// whole append (a patched batch is two parts, its header and its body) unless the file
/// system writes short or there are more than [`IOV_PER_WRITE`] parts.
fn write_at(file: &File, parts: &[&[u8]], mut pos: u64) -> std::io::Result<()> {
    #[cfg(any(test, feature = "testutil"))]
    if let Some(mut n) = FAIL_NEXT_WRITE_AFTER.with(|c| c.take()) {
        for part in parts {
            let len = n.min(part.len());
            file.write_all_at(&part[..len], pos)?;
            pos += len as u64;
            n -= len;
        }
        return Err(std::io::Error::from_raw_os_error(28));
    }
    use std::os::fd::AsRawFd;
    // One iovec per part, advanced in place past what each call wrote.
    let mut iov: Vec<libc::iovec> = parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    let mut done = 0;
    loop {
        while done < iov.len() && iov[done].iov_len == 0 {
            done += 1;
        }
        if done == iov.len() {
            return Ok(());
        }
        let batch = &iov[done..iov.len().min(done + IOV_PER_WRITE)];
        // SAFETY: every iovec points into a part borrowed for the whole call, and the
        // descriptor is owned by `file`.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                batch.as_ptr(),
                batch.len() as libc::c_int,
                pos as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        pos += n as u64;
        let mut n = n as usize;
        while n >= iov[done].iov_len {
            n -= iov[done].iov_len;
            done += 1;
            if done == iov.len() {
                return Ok(());
            }
        }
        iov[done].iov_base = (iov[done].iov_base as *mut u8).wrapping_add(n) as *mut libc::c_void;
        iov[done].iov_len -= n;
    }
}

/// At most this many parts per `pwritev` (Linux's `IOV_MAX` is 1024).
const IOV_PER_WRITE: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// More parts than one `pwritev` takes, empty ones among them, at an offset: the file
    /// holds exactly their concatenation there.
    #[test]
    fn write_at_writes_every_part_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(dir.path().join("parts"))
            .unwrap();
        let owned: Vec<Vec<u8>> = (0..2 * IOV_PER_WRITE + 7)
            .map(|i| vec![(i % 251) as u8; i % 13])
            .collect();
        let parts: Vec<&[u8]> = owned.iter().map(|p| p.as_slice()).collect();
        let expected: Vec<u8> = owned.concat();
        write_at(&file, &parts, 100).unwrap();
        let mut got = vec![0u8; expected.len()];
        file.read_exact_at(&mut got, 100).unwrap();
        assert_eq!(got, expected);
        assert_eq!(file.metadata().unwrap().len(), 100 + expected.len() as u64);
    }
}
