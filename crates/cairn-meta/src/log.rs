//! [`MetadataLog`]: the ordered, durable list of metadata records on a single node.
//!
//! ## File format (`<dir>/metadata.log`)
//! A sequence of frames, each:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length `n`, big-endian u32 (at most [`RECORD_BYTES_MAX`]) |
//! | 4 | CRC-32 (IEEE) of the payload, big-endian |
//! | n | the record as UTF-8 JSON |
//!
//! ## Durability
//! [`MetadataLog::append`] writes every frame of a change and fdatasyncs before it returns,
//! so a change that returned is on disk. A frame cut short by a crash at the tail is
//! truncated on open (logged); a bad frame followed by more data is corruption, and open
//! fails with its file offset instead of silently dropping later metadata.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::records::MetadataRecord;
use crate::state::ClusterState;

/// Largest encoded record accepted; a topic with 10,000 partitions stays well below it.
pub const RECORD_BYTES_MAX: u32 = 16 * 1024 * 1024;
const FRAME_HEADER_BYTES: usize = 8;
const FILE_NAME: &str = "metadata.log";

/// Errors of the metadata log file.
#[derive(Debug, thiserror::Error)]
pub enum MetadataLogError {
    #[error("metadata log {path}: {op} failed: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "metadata log {path} is corrupt at byte {position}: {reason}; restore the data directory from a backup"
    )]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
}

/// An append-only file of metadata records.
#[derive(Debug)]
pub struct MetadataLog {
    path: PathBuf,
    file: File,
    records: u64,
}

impl MetadataLog {
    /// Opens (or creates) the log in `dir` and replays it into a [`ClusterState`].
    pub fn open(dir: &Path) -> Result<(MetadataLog, ClusterState), MetadataLogError> {
        let path = dir.join(FILE_NAME);
        let io = |op| {
            let path = path.clone();
            move |source| MetadataLogError::Io { op, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create directory"))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read"))?;

        let mut state = ClusterState::default();
        let mut position = 0usize;
        let mut records = 0u64;
        while position < bytes.len() {
            match decode_frame(&bytes[position..]) {
                Frame::Record(record, len) => {
                    state.apply(&record);
                    records += 1;
                    position += len;
                }
                Frame::Torn(reason) => {
                    tracing::warn!(
                        path = %path.display(),
                        position,
                        dropped_bytes = bytes.len() - position,
                        "metadata log: truncating a torn tail ({reason})"
                    );
                    file.set_len(position as u64).map_err(io("truncate"))?;
                    file.sync_data().map_err(io("fdatasync"))?;
                    break;
                }
                Frame::Corrupt(reason) => {
                    return Err(MetadataLogError::Corrupt {
                        path,
                        position: position as u64,
                        reason,
                    });
                }
            }
        }
        file.seek(SeekFrom::End(0)).map_err(io("seek"))?;
        Ok((
            MetadataLog {
                path,
                file,
                records,
            },
            state,
        ))
    }

    /// Reads every record of the log in `dir` without applying them (to import an older
    /// node's log into the metadata quorum). A torn tail is left out, as on open;
    /// corruption before it is an error.
    pub fn read_records(dir: &Path) -> Result<Vec<MetadataRecord>, MetadataLogError> {
        let path = dir.join(FILE_NAME);
        let bytes = std::fs::read(&path).map_err(|source| MetadataLogError::Io {
            op: "read",
            path: path.clone(),
            source,
        })?;
        let mut records = Vec::new();
        let mut position = 0usize;
        while position < bytes.len() {
            match decode_frame(&bytes[position..]) {
                Frame::Record(record, len) => {
                    records.push(record);
                    position += len;
                }
                Frame::Torn(_) => break,
                Frame::Corrupt(reason) => {
                    return Err(MetadataLogError::Corrupt {
                        path,
                        position: position as u64,
                        reason,
                    });
                }
            }
        }
        Ok(records)
    }

    /// Appends `records` and fdatasyncs. When this returns `Ok`, they survive a crash.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), MetadataLogError> {
        let mut buf = Vec::new();
        for record in records {
            let payload = serde_json::to_vec(record).expect("metadata records always serialise");
            assert!(
                payload.len() <= RECORD_BYTES_MAX as usize,
                "metadata record of {} bytes exceeds RECORD_BYTES_MAX",
                payload.len()
            );
            buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            buf.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
            buf.extend_from_slice(&payload);
        }
        let io = |op| {
            let path = self.path.clone();
            move |source| MetadataLogError::Io { op, path, source }
        };
        self.file.write_all(&buf).map_err(io("write"))?;
        self.file.sync_data().map_err(io("fdatasync"))?;
        self.records += records.len() as u64;
        Ok(())
    }

    /// Records in the log.
    pub fn len(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

enum Frame {
    Record(MetadataRecord, usize),
    /// The frame runs past the end of the file: a write cut short.
    Torn(&'static str),
    Corrupt(String),
}

fn decode_frame(buf: &[u8]) -> Frame {
    if buf.len() < FRAME_HEADER_BYTES {
        return Frame::Torn("partial frame header");
    }
    let len = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len > RECORD_BYTES_MAX {
        return Frame::Corrupt(format!("frame length {len} exceeds {RECORD_BYTES_MAX}"));
    }
    let end = FRAME_HEADER_BYTES + len as usize;
    if buf.len() < end {
        return Frame::Torn("partial frame payload");
    }
    let payload = &buf[FRAME_HEADER_BYTES..end];
    if crc32fast::hash(payload) != crc {
        return if buf.len() == end {
            Frame::Torn("CRC mismatch in the last frame")
        } else {
            Frame::Corrupt("CRC mismatch".into())
        };
    }
    match serde_json::from_slice(payload) {
        Ok(record) => Frame::Record(record, end),
        Err(e) => Frame::Corrupt(format!("undecodable record: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(id: &str) -> MetadataRecord {
        MetadataRecord::InitCluster {
            cluster_id: id.into(),
        }
    }

    #[test]
    fn replays_after_reopen_and_drops_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, state) = MetadataLog::open(dir.path()).unwrap();
            assert!(log.is_empty());
            assert_eq!(state.cluster_id(), None);
            log.append(&[init("c1")]).unwrap();
        }
        // A crash mid-append leaves half a frame behind.
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0, 0, 0, 50, 1, 2]).unwrap();
        drop(f);
        let (log, state) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(state.cluster_id(), Some("c1"));
        let good_len = std::fs::metadata(&path).unwrap().len();
        drop(log);
        let (log, _) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    }

    #[test]
    fn corruption_before_the_tail_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
            log.append(&[init("c1")]).unwrap();
            log.append(&[MetadataRecord::RegisterBroker {
                broker_id: 1,
                host: "h".into(),
                port: 1,
                rack: None,
                incarnation: uuid::Uuid::nil(),
            }])
            .unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[FRAME_HEADER_BYTES + 2] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        match MetadataLog::open(dir.path()) {
            Err(MetadataLogError::Corrupt { position, .. }) => assert_eq!(position, 0),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
