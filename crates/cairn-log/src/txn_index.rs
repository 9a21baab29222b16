//! The aborted transaction index of one segment, `<base>.txnindex` (Kafka's
//! `TransactionIndex` and `AbortedTxn`).
//!
//! Every ABORT marker appended to the log (as leader, as follower, or replayed by recovery)
//! adds one entry to the index of the segment that holds the marker. Fetch in read_committed
//! mode lists the aborted transactions overlapping the fetched range
//! ([`crate::PartitionLog::collect_aborted_transactions`]) so that consumers drop those
//! producers' records in `[first_offset, last_offset]`.
//!
//! ## Format, byte by byte
//!
//! Entries of 34 bytes back to back, big-endian, in increasing `last_offset` (append order),
//! no file header:
//!
//! | bytes  | field                                                                   |
//! |--------|-------------------------------------------------------------------------|
//! | 0..2   | `version` i16 = 0                                                       |
//! | 2..10  | `producer_id` i64                                                       |
//! | 10..18 | `first_offset` i64: base offset of the transaction's first batch        |
//! | 18..26 | `last_offset` i64: offset of the ABORT marker                           |
//! | 26..34 | `last_stable_offset` i64: the first offset of the earliest transaction still ongoing right after the marker, else `last_offset + 1` |
//!
//! The file exists only once a segment holds an abort marker. Appends are `pwrite`s at the
//! end; the file is made durable by the flush tickets that cover its segment (and the
//! directory is fsync'ed when the file is created, so that it cannot vanish once a ticket
//! covered it). Rewrites (recovery) go through `.tmp` + fdatasync + rename.
//!
//! A file whose length is not a whole number of entries, or whose entries are not valid
//! (version, ordering, offsets outside the segment), is damaged: the log logs it and rebuilds
//! the index from the segment's batches and the producer state (see `log.rs`).
//!
//! The whole index of a segment is also kept in memory (a few entries per segment in
//! practice: one per aborted transaction).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::durability::Fsync;
use crate::error::{IoContext, LogError};

/// Bytes of one `.txnindex` entry.
pub const TXN_INDEX_ENTRY_BYTES: usize = 34;

/// One aborted transaction (Kafka's `AbortedTxn`), as stored in a `.txnindex` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Base offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
    /// The partition's last stable offset right after the marker, as Kafka defines it for
    /// this index: the first offset of the earliest transaction still ongoing, else
    /// `last_offset + 1`. Lets a search stop early (see [`crate::PartitionLog::collect_aborted_transactions`]).
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; TXN_INDEX_ENTRY_BYTES] {
        let mut b = [0u8; TXN_INDEX_ENTRY_BYTES];
        b[0..2].copy_from_slice(&0i16.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<AbortedTxn, String> {
        let version = i16::from_be_bytes([b[0], b[1]]);
        if version != 0 {
            return Err(format!("unknown entry version {version}"));
        }
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().unwrap());
        let e = AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        };
        if e.producer_id < 0
            || e.first_offset < 0
            || e.first_offset > e.last_offset
            || e.last_stable_offset < 0
            || e.last_stable_offset > e.last_offset + 1
        {
            return Err(format!("invalid entry {e:?}"));
        }
        Ok(e)
    }
}

/// The aborted transactions whose marker is in one segment.
pub(crate) struct TransactionIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
    /// Open for appends (and flush tickets) once written to; released with the segment's
    /// other idle descriptors.
    file: Option<Arc<File>>,
    /// Why the file on disk could not be loaded (the entries are then empty until rebuilt).
    pub(crate) damage: Option<String>,
}

impl TransactionIndex {
    /// An empty index for a new segment; removes a leftover file of the same name.
    pub(crate) fn create(path: PathBuf) -> Result<TransactionIndex, LogError> {
        remove_if_exists(&path)?;
        Ok(TransactionIndex {
            path,
            entries: Vec::new(),
            file: None,
            damage: None,
        })
    }

    /// Loads the index of an existing segment (a missing file is an empty index). A damaged
    /// file loads as empty with `damage` set.
    pub(crate) fn load(path: PathBuf) -> Result<TransactionIndex, LogError> {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(LogError::Io {
                    op: "read transaction index",
                    path,
                    source: e,
                });
            }
        };
        let mut idx = TransactionIndex {
            path,
            entries: Vec::new(),
            file: None,
            damage: None,
        };
        match decode_all(&bytes) {
            Ok(entries) => idx.entries = entries,
            Err(reason) => idx.damage = Some(reason),
        }
        Ok(idx)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    /// The open descriptor, if the index was written since it was opened.
    pub(crate) fn file(&self) -> Option<&Arc<File>> {
        self.file.as_ref()
    }

    /// Closes the descriptor (the next append reopens it). Returns whether one was open.
    pub(crate) fn release_file(&mut self) -> bool {
        self.file.take().is_some()
    }

    /// Checks the loaded entries against the segment's offsets `[base_offset, end_offset)`.
    pub(crate) fn check(&self, base_offset: i64, end_offset: i64) -> Result<(), String> {
        if let Some(reason) = &self.damage {
            return Err(reason.clone());
        }
        if let (Some(first), Some(last)) = (self.entries.first(), self.entries.last()) {
            if first.last_offset < base_offset || last.last_offset >= end_offset {
                return Err(format!(
                    "markers at {}..={} outside the segment's offsets {base_offset}..{end_offset}",
                    first.last_offset, last.last_offset
                ));
            }
        }
        Ok(())
    }

    /// Appends one entry (its marker must come after every indexed marker). Returns `true`
    /// when the file was created, in which case the caller fsyncs the directory.
    pub(crate) fn append(&mut self, e: AbortedTxn) -> Result<bool, LogError> {
        assert!(
            self.entries
                .last()
                .is_none_or(|l| l.last_offset < e.last_offset),
            "transaction index entries must follow marker order"
        );
        let mut created = false;
        if self.file.is_none() {
            created = !self.path.exists();
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)
                .io_ctx("open transaction index", &self.path)?;
            self.file = Some(Arc::new(f));
        }
        let f = self.file.as_ref().unwrap();
        let pos = (self.entries.len() * TXN_INDEX_ENTRY_BYTES) as u64;
        if let Err(e) = f.write_all_at(&e.encode(), pos) {
            let _ = f.set_len(pos);
            return Err(LogError::Io {
                op: "append to transaction index",
                path: self.path.clone(),
                source: e,
            });
        }
        self.entries.push(e);
        Ok(created)
    }

    /// Drops the entries whose marker is at or after `offset` (a truncation of the log).
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        if keep == self.entries.len() && self.damage.is_none() {
            return Ok(());
        }
        self.entries.truncate(keep);
        self.rewrite()
    }

    /// Replaces every entry (a rebuild during recovery), durably: `.tmp`, fdatasync, rename.
    /// An empty index removes the file.
    pub(crate) fn replace(&mut self, entries: Vec<AbortedTxn>) -> Result<(), LogError> {
        assert!(
            entries
                .windows(2)
                .all(|w| w[0].last_offset < w[1].last_offset),
            "transaction index entries must follow marker order"
        );
        self.entries = entries;
        self.rewrite()
    }

    fn rewrite(&mut self) -> Result<(), LogError> {
        self.file = None;
        self.damage = None;
        if self.entries.is_empty() {
            return remove_if_exists(&self.path);
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut bytes = Vec::with_capacity(self.entries.len() * TXN_INDEX_ENTRY_BYTES);
        for e in &self.entries {
            bytes.extend_from_slice(&e.encode());
        }
        let f = File::create(&tmp).io_ctx("create transaction index", &tmp)?;
        f.write_all_at(&bytes, 0)
            .io_ctx("write transaction index", &tmp)?;
        f.fsync().io_ctx("fsync transaction index", &tmp)?;
        std::fs::rename(&tmp, &self.path).io_ctx("rename transaction index", &self.path)?;
        Ok(())
    }

    /// Adds to `out` the entries with `last_offset >= from_offset` and `first_offset <
    /// upper_bound_offset` (Kafka's `TransactionIndex.collectAbortedTxns`). Returns `true`
    /// when the search is complete: an entry's `last_stable_offset >= upper_bound_offset`
    /// means every transaction starting below the bound had ended by then, so later
    /// segments cannot add any.
    pub(crate) fn collect(
        &self,
        from_offset: i64,
        upper_bound_offset: i64,
        out: &mut Vec<AbortedTxn>,
    ) -> bool {
        for e in &self.entries {
            if e.last_offset >= from_offset && e.first_offset < upper_bound_offset {
                out.push(*e);
            }
            if e.last_stable_offset >= upper_bound_offset {
                return true;
            }
        }
        false
    }
}

fn decode_all(bytes: &[u8]) -> Result<Vec<AbortedTxn>, String> {
    if bytes.len() % TXN_INDEX_ENTRY_BYTES != 0 {
        return Err(format!(
            "{} bytes is not a whole number of {TXN_INDEX_ENTRY_BYTES}-byte entries",
            bytes.len()
        ));
    }
    let mut out: Vec<AbortedTxn> = Vec::with_capacity(bytes.len() / TXN_INDEX_ENTRY_BYTES);
    for chunk in bytes.chunks_exact(TXN_INDEX_ENTRY_BYTES) {
        let e = AbortedTxn::decode(chunk)?;
        if let Some(prev) = out.last() {
            if e.last_offset <= prev.last_offset {
                return Err(format!(
                    "marker offsets {} then {} do not increase",
                    prev.last_offset, e.last_offset
                ));
            }
        }
        out.push(e);
    }
    Ok(out)
}

fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::Io {
            op: "remove transaction index",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn append_load_truncate_and_damage() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("00000000000000000010.txnindex");
        let mut idx = TransactionIndex::create(path.clone()).unwrap();
        assert!(!path.exists(), "created lazily");
        assert!(idx.append(txn(1, 10, 12, 13)).unwrap());
        assert!(!idx.append(txn(2, 11, 15, 14)).unwrap());
        assert!(!idx.append(txn(1, 16, 20, 21)).unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 3 * TXN_INDEX_ENTRY_BYTES);
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &1i64.to_be_bytes());
        assert_eq!(&bytes[26..34], &13i64.to_be_bytes());
        let loaded = TransactionIndex::load(path.clone()).unwrap();
        assert_eq!(loaded.entries(), idx.entries());
        assert_eq!(loaded.check(10, 21), Ok(()));
        assert!(loaded.check(10, 20).is_err());
        assert!(loaded.check(13, 30).is_err());

        let mut out = Vec::new();
        // Entries with a marker at or after 13 and a start below 16; the search is complete
        // at the entry whose last stable offset reaches 16.
        assert!(idx.collect(13, 16, &mut out));
        assert_eq!(out, vec![txn(2, 11, 15, 14)]);
        out.clear();
        assert!(!idx.collect(0, 100, &mut out));
        assert_eq!(out.len(), 3);

        idx.truncate_to(15).unwrap();
        assert_eq!(idx.entries(), &[txn(1, 10, 12, 13)]);
        assert_eq!(
            TransactionIndex::load(path.clone()).unwrap().entries(),
            idx.entries()
        );
        idx.truncate_to(0).unwrap();
        assert!(!path.exists());

        // Torn, reordered and invalid files are damaged.
        for bad in [
            vec![0u8; 33],
            [txn(1, 5, 9, 10).encode(), txn(1, 1, 3, 4).encode()].concat(),
            txn(1, 9, 5, 10).encode().to_vec(),
            {
                let mut b = txn(1, 1, 3, 4).encode();
                b[1] = 1;
                b.to_vec()
            },
        ] {
            std::fs::write(&path, &bad).unwrap();
            let l = TransactionIndex::load(path.clone()).unwrap();
            assert!(l.damage.is_some() && l.entries().is_empty());
            assert!(l.check(0, 100).is_err());
        }
        let mut l = TransactionIndex::load(path.clone()).unwrap();
        l.replace(vec![txn(3, 1, 2, 3)]).unwrap();
        assert_eq!(
            TransactionIndex::load(path).unwrap().entries(),
            &[txn(3, 1, 2, 3)]
        );
    }
}
