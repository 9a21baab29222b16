//! Fault tests: short writes, a full disk (a tiny tmpfs), flipped bytes in segments.

use std::path::{Path, PathBuf};

use cairn_log::testutil::{fail_next_write_after, simple_batch, stored_bytes};
use cairn_log::{Batches, LogConfig, LogError, PartitionLog};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        segment_index_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

fn read_all(log: &PartitionLog) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let r = log.read(at, 1 << 20, i64::MAX, true).unwrap();
        for item in Batches::new(&r.records) {
            let (h, b) = item.unwrap();
            out.push(b.to_vec());
            at = h.last_offset() + 1;
        }
    }
    out
}

fn append(log: &mut PartitionLog, n: usize) -> Result<Vec<u8>, LogError> {
    let b = simple_batch(n, 100, 1_000);
    log.append_as_leader(&b, 0, 1_000)
        .map(|info| stored_bytes(log, &info))
}

#[test]
fn short_write_fails_the_append_and_leaves_the_log_consistent() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    let mut acked = vec![append(&mut log, 3).unwrap()];
    let size = log.size_bytes();
    fail_next_write_after(50);
    match append(&mut log, 3) {
        Err(LogError::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(28)),
        other => panic!("{other:?}"),
    }
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.size_bytes(), size);
    assert_eq!(read_all(&log), acked);
    let seg = d.path().join(format!("{:020}.log", 0));
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        size,
        "partial bytes cut"
    );
    acked.push(append(&mut log, 2).unwrap());
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(read_all(&log), acked);
    // A short write followed by a crash: recovery keeps exactly the acknowledged batches.
    fail_next_write_after(70);
    assert!(append(&mut log, 1).is_err());
    drop(log);
    let log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(read_all(&log), acked);
}

/// A tmpfs of `bytes` mounted on a temp dir, unmounted on drop. `None` without privileges.
struct TinyFs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount(bytes: usize) -> Option<TinyFs> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().to_path_buf();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(TinyFs { path, _dir: dir })
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

fn is_enospc(e: &LogError) -> bool {
    matches!(e, LogError::Io { source, .. } if source.raw_os_error() == Some(28))
}

#[test]
fn disk_full_fails_appends_and_recovers_when_space_returns() {
    let Some(fs) = TinyFs::mount(1024 * 1024) else {
        eprintln!("skipping: cannot mount a tmpfs (needs root)");
        return;
    };
    let dir = fs.path.join("topic-0");
    let ballast = fs.path.join("ballast");
    std::fs::write(&ballast, vec![1u8; 256 * 1024]).unwrap();
    let mut log = PartitionLog::open(&dir, config(), 0).unwrap();
    let mut acked = Vec::new();
    let err = loop {
        match append(&mut log, 8) {
            Ok(b) => acked.push(b),
            Err(e) => break e,
        }
        assert!(acked.len() < 10_000, "the disk never filled");
    };
    assert!(is_enospc(&err), "{err:?}");
    let leo = log.log_end_offset();
    // Still readable and consistent; further appends keep failing cleanly.
    assert_eq!(read_all(&log), acked);
    assert!(append(&mut log, 8).is_err());
    assert_eq!(log.log_end_offset(), leo);
    // Space comes back: the next append works.
    std::fs::remove_file(&ballast).unwrap();
    acked.push(append(&mut log, 8).unwrap());
    assert_eq!(read_all(&log), acked);
    log.flush().unwrap();
    drop(log);
    let log = PartitionLog::open(&dir, config(), 0).unwrap();
    assert_eq!(read_all(&log), acked);
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_byte_is_reported_on_read_with_path_and_position() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    let batches: Vec<Vec<u8>> = (0..20).map(|_| append(&mut log, 2).unwrap()).collect();
    log.close().unwrap();
    let seg = d.path().join(format!("{:020}.log", 0));
    let pos10: usize = batches[..10].iter().map(Vec::len).sum();
    flip(&seg, pos10 + 80);
    let log = PartitionLog::open(d.path(), config(), 0).unwrap();
    match log.read(20, 1 << 20, i64::MAX, true) {
        Err(LogError::CorruptSegment {
            path,
            position,
            reason,
        }) => {
            assert_eq!(path, seg);
            assert_eq!(position as usize, pos10);
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Reads before it stop short of the corrupt batch: it is never served.
    let r = log.read(0, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(&r.records[..], &batches[..10].concat()[..]);
    let r = log.read(22, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(&r.records[..], &batches[11..].concat()[..]);
}

#[test]
fn flipped_byte_is_truncated_by_crash_recovery() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    let batches: Vec<Vec<u8>> = (0..20).map(|_| append(&mut log, 2).unwrap()).collect();
    drop(log);
    let seg = d.path().join(format!("{:020}.log", 0));
    let pos10: usize = batches[..10].iter().map(Vec::len).sum();
    flip(&seg, pos10 + 80);
    let log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(read_all(&log), batches[..10].to_vec());
}

#[test]
fn garbage_segment_files_do_not_panic_recovery() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join(format!("{:020}.log", 5)),
        b"\x00\x00\x00\x00\x00\x00\x00\x05\x7f\xff\xff\xffgarbage",
    )
    .unwrap();
    std::fs::write(d.path().join(format!("{:020}.index", 5)), vec![0xffu8; 13]).unwrap();
    std::fs::write(
        d.path().join(format!("{:020}.timeindex", 9)),
        vec![0xffu8; 24],
    )
    .unwrap();
    std::fs::write(d.path().join("recovery-point-offset-checkpoint"), "garbage").unwrap();
    let mut log = PartitionLog::open(d.path(), config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.size_bytes(), 0);
    append(&mut log, 1).unwrap();
    assert_eq!(log.log_end_offset(), 6);
}

fn segment_files(dir: &Path, base: i64) -> [PathBuf; 3] {
    ["log", "index", "timeindex"].map(|ext| dir.join(format!("{base:020}.{ext}")))
}

fn small() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_index_bytes: 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

#[test]
fn missing_index_files_are_rebuilt_on_open() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), small(), 0).unwrap();
    let mut batches = Vec::new();
    for i in 0..40 {
        let b = simple_batch(2, 100, 1_000 + i);
        let info = log.append_as_leader(&b, 0, 0).unwrap();
        batches.push(stored_bytes(&log, &info));
    }
    assert!(log.num_segments() >= 3);
    log.close().unwrap();
    // As after a crash in the middle of a cleaner swap: the first segment has no indexes.
    let [_, index, timeindex] = segment_files(d.path(), 0);
    std::fs::remove_file(&index).unwrap();
    std::fs::remove_file(&timeindex).unwrap();
    let log = PartitionLog::open(d.path(), small(), 0).unwrap();
    assert!(std::fs::metadata(&timeindex).unwrap().len() > 0);
    assert_eq!(read_all(&log), batches);
    assert_eq!(
        log.fetch_offset_by_timestamp(1_003)
            .unwrap()
            .map(|t| t.offset),
        Some(6)
    );
}

#[test]
fn untrimmed_index_files_after_a_crash_are_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(d.path(), small(), 0).unwrap();
    for i in 0..40 {
        let b = simple_batch(2, 100, 1_000_000 + i);
        log.append_as_leader(&b, 0, 0).unwrap();
    }
    log.flush().unwrap();
    drop(log);
    // The trim of a sealed segment's index files was lost: zeros follow the entries.
    let [_, index, timeindex] = segment_files(d.path(), 0);
    for (p, extra) in [(&index, 800u64), (&timeindex, 1200)] {
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len + extra)
            .unwrap();
    }
    // Pretend the recovery point was in the last segment so that segment 0 is only checked.
    let mut log = PartitionLog::open(d.path(), small(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 80);
    assert_eq!(
        log.fetch_offset_by_timestamp(1_000_005)
            .unwrap()
            .map(|t| t.offset),
        Some(10)
    );
    // A zero timestamp from the garbage would make time retention delete segment 0.
    log.update_config(LogConfig {
        retention_ms: 1000,
        ..small()
    });
    assert_eq!(log.delete_old_segments(1_000_100).unwrap(), 0);
}
