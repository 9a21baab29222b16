//! Benchmarks of the partition log next to the raw disk, in one run:
//!
//! ```text
//! cargo bench -p cairn-log --bench log            # criterion groups + a ratio summary
//! CAIRN_BENCH_DIR=/mnt/disk cargo bench -p cairn-log --bench log
//! ```
//!
//! - `append_never`: 1 KiB records in ~16 KiB and ~1 MiB batches, `FlushPolicy::Never`,
//!   against a plain sequential `write` loop of the same buffers.
//! - `append_group_commit`: one append + `begin_flush`/`sync`/`complete_flush` per batch (a
//!   single producer with `acks=all`, the worst case for group commit), against a plain
//!   `write` + `fdatasync` loop of the same buffers.
//! - `read_sequential`: 1 MiB reads through a 256 MiB log (page cache warm) against `pread`.
//! - `open`: opening a 1 GiB log after a clean and after an unclean shutdown, and an empty one.
//!
//! After the criterion groups a summary measures each pair again with a fixed amount of work
//! and prints the log's rate as a ratio of the disk's.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_log::testutil::{BatchBuilder, TestRecord};
use cairn_log::{FlushPolicy, LogConfig, PartitionLog};
use criterion::{BenchmarkId, Criterion, Throughput};

const RECORD_VALUE_BYTES: usize = 1000;
/// Files are restarted past this size so a long run does not fill the disk.
const FILE_RESTART_BYTES: u64 = 1 << 30;

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("CAIRN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(base).unwrap()
}

/// A batch of `records` records of ~1 KiB each (6-byte key, 1000-byte value, overhead).
fn batch(records: usize) -> Vec<u8> {
    BatchBuilder::new(0)
        .records((0..records).map(|i| {
            TestRecord::kv(
                1_700_000_000_000,
                format!("k{i:05}"),
                vec![b'v'; RECORD_VALUE_BYTES],
            )
        }))
        .build()
}

const SIZES: [(&str, usize); 2] = [("16KiB", 16), ("1MiB", 1024)];

fn config(policy: FlushPolicy) -> LogConfig {
    LogConfig {
        flush_policy: policy,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// A plain sequential file writer, the disk baseline.
struct Raw {
    dir: PathBuf,
    file: File,
    len: u64,
}

impl Raw {
    fn new(dir: &Path) -> Raw {
        let file = File::create(dir.join("raw")).unwrap();
        Raw {
            dir: dir.to_path_buf(),
            file,
            len: 0,
        }
    }

    fn write(&mut self, buf: &[u8], sync: bool) {
        if self.len > FILE_RESTART_BYTES {
            *self = Raw::new(&self.dir);
        }
        self.file.write_all(buf).unwrap();
        self.len += buf.len() as u64;
        if sync {
            self.file.sync_data().unwrap();
        }
    }
}

fn append(log: &mut PartitionLog, buf: &mut [u8], group_commit: bool) {
    if log.size_bytes() > FILE_RESTART_BYTES {
        let leo = log.log_end_offset();
        log.truncate_fully_and_start_at(leo).unwrap();
    }
    log.append_as_leader(buf, 0, 0).unwrap();
    if group_commit {
        let t = log.begin_flush().unwrap();
        t.sync().unwrap();
        log.complete_flush(t.up_to_offset);
    }
}

fn bench_append(c: &mut Criterion, name: &str, policy: FlushPolicy, sync: bool) {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .measurement_time(Duration::from_secs(if sync { 6 } else { 4 }));
    for (label, records) in SIZES {
        let mut buf = batch(records);
        g.throughput(Throughput::Bytes(buf.len() as u64));
        let d = bench_dir();
        let mut raw = Raw::new(d.path());
        g.bench_function(
            BenchmarkId::new(
                if sync {
                    "raw_write_fdatasync"
                } else {
                    "raw_write"
                },
                label,
            ),
            |b| b.iter(|| raw.write(&buf, sync)),
        );
        let mut log = PartitionLog::open(&d.path().join("log"), config(policy), 0).unwrap();
        g.bench_function(BenchmarkId::new("log_append", label), |b| {
            b.iter(|| append(&mut log, &mut buf, sync))
        });
    }
    g.finish();
}

fn fill(dir: &Path, total_bytes: u64, segment_bytes: u32) -> PartitionLog {
    let c = LogConfig {
        segment_bytes,
        ..config(FlushPolicy::Never)
    };
    let mut log = PartitionLog::open(dir, c, 0).unwrap();
    let buf = batch(16);
    while log.size_bytes() < total_bytes {
        log.append_as_leader(&buf, 0, 0).unwrap();
    }
    log
}

fn read_all(log: &PartitionLog, max_bytes: usize) -> u64 {
    let mut at = log.log_start_offset();
    let mut bytes = 0u64;
    while at < log.log_end_offset() {
        let r = log.read(at, max_bytes, i64::MAX, true).unwrap();
        let mut it = cairn_log::Batches::new(&r.records);
        let mut last = at;
        for item in &mut it {
            last = item.unwrap().0.last_offset();
        }
        bytes += r.records.len() as u64;
        at = last + 1;
    }
    bytes
}

fn raw_read_all(path: &Path, chunk: usize) -> u64 {
    let f = File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut buf = vec![0u8; chunk];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(chunk as u64) as usize;
        f.read_exact_at(&mut buf[..n], at).unwrap();
        at += n as u64;
    }
    len
}

const READ_LOG_BYTES: u64 = 256 << 20;

fn bench_read(c: &mut Criterion) {
    let d = bench_dir();
    let log = fill(&d.path().join("log"), READ_LOG_BYTES, 1 << 30);
    let seg = d.path().join("log").join(format!("{:020}.log", 0));
    let mut g = c.benchmark_group("read_sequential");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Bytes(log.size_bytes()));
    g.bench_function("raw_pread_1MiB", |b| b.iter(|| raw_read_all(&seg, 1 << 20)));
    g.bench_function("log_read_1MiB", |b| b.iter(|| read_all(&log, 1 << 20)));
    g.finish();
}

const OPEN_LOG_BYTES: u64 = 1 << 30;
const OPEN_SEGMENT_BYTES: u32 = 128 << 20;

fn time_open(dir: &Path, clean: bool) -> Duration {
    let c = LogConfig {
        segment_bytes: OPEN_SEGMENT_BYTES,
        ..config(FlushPolicy::Never)
    };
    let start = Instant::now();
    let log = PartitionLog::open(dir, c, 0).unwrap();
    let took = start.elapsed();
    if clean {
        log.close().unwrap()
    } else {
        drop(log)
    }
    took
}

fn bench_open(c: &mut Criterion) {
    let d = bench_dir();
    let empty = d.path().join("empty");
    PartitionLog::open(&empty, config(FlushPolicy::Never), 0)
        .unwrap()
        .close()
        .unwrap();
    let big = d.path().join("big");
    fill(&big, OPEN_LOG_BYTES, OPEN_SEGMENT_BYTES)
        .close()
        .unwrap();
    let mut g = c.benchmark_group("open");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function("empty_after_clean_shutdown", |b| {
        b.iter_custom(|n| (0..n).map(|_| time_open(&empty, true)).sum())
    });
    g.bench_function("1GiB_after_clean_shutdown", |b| {
        b.iter_custom(|n| (0..n).map(|_| time_open(&big, true)).sum())
    });
    // Unclean: every open recovers the segment holding the recovery point (the last one).
    g.bench_function("1GiB_after_crash", |b| {
        b.iter_custom(|n| (0..n).map(|_| time_open(&big, false)).sum())
    });
    g.finish();
}

/// Writes back everything dirty so that one measurement does not pay for the previous one.
fn sync_all() {
    let _ = std::process::Command::new("sync").status();
}

fn mib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
}

/// Re-measures each pair with a fixed amount of work and prints log/disk ratios.
fn summary() {
    let mut out = String::new();
    let line = |out: &mut String, what: &str, disk: f64, log: f64, unit: &str| {
        out.push_str(&format!(
            "{what:<44} disk {disk:>9.1} {unit:<6} log {log:>9.1} {unit:<6} ratio {:>5.1}%\n",
            100.0 * log / disk
        ));
    };
    // Each side runs twice, alternating, after a `sync`, and keeps its best: background
    // writeback of the previous run otherwise decides who wins.
    for (label, records) in SIZES {
        let buf = batch(records);
        let total: u64 = 512 << 20;
        let n = total / buf.len() as u64;
        let (mut disk, mut logr) = (0f64, 0f64);
        for _ in 0..2 {
            let d = bench_dir();
            sync_all();
            let mut raw = Raw::new(d.path());
            let start = Instant::now();
            for _ in 0..n {
                raw.write(&buf, false);
            }
            disk = disk.max(mib_per_s(n * buf.len() as u64, start.elapsed()));
            drop(raw);
            std::fs::remove_file(d.path().join("raw")).unwrap();
            sync_all();
            let mut log =
                PartitionLog::open(&d.path().join("log"), config(FlushPolicy::Never), 0).unwrap();
            let mut buf = buf.clone();
            let start = Instant::now();
            for _ in 0..n {
                append(&mut log, &mut buf, false);
            }
            logr = logr.max(mib_per_s(n * buf.len() as u64, start.elapsed()));
        }
        line(
            &mut out,
            &format!("append never, {label} batches (512 MiB)"),
            disk,
            logr,
            "MiB/s",
        );
    }
    for (label, records) in SIZES {
        let buf = batch(records);
        let n: u64 = if records > 100 { 100 } else { 400 };
        let (mut disk, mut logr) = (0f64, 0f64);
        for _ in 0..2 {
            let d = bench_dir();
            sync_all();
            let mut raw = Raw::new(d.path());
            let start = Instant::now();
            for _ in 0..n {
                raw.write(&buf, true);
            }
            disk = disk.max(n as f64 / start.elapsed().as_secs_f64());
            sync_all();
            let mut log =
                PartitionLog::open(&d.path().join("log"), config(FlushPolicy::GroupCommit), 0)
                    .unwrap();
            let mut buf = buf.clone();
            let start = Instant::now();
            for _ in 0..n {
                append(&mut log, &mut buf, true);
            }
            logr = logr.max(n as f64 / start.elapsed().as_secs_f64());
        }
        line(
            &mut out,
            &format!("append group commit, {label} batches ({n} commits)"),
            disk,
            logr,
            "ops/s",
        );
    }
    {
        let d = bench_dir();
        let log = fill(&d.path().join("log"), READ_LOG_BYTES, 1 << 30);
        let seg = d.path().join("log").join(format!("{:020}.log", 0));
        raw_read_all(&seg, 1 << 20);
        let (mut disk, mut logr) = (0f64, 0f64);
        for _ in 0..3 {
            let start = Instant::now();
            let bytes = raw_read_all(&seg, 1 << 20);
            disk = disk.max(mib_per_s(bytes, start.elapsed()));
            let start = Instant::now();
            let bytes = read_all(&log, 1 << 20);
            logr = logr.max(mib_per_s(bytes, start.elapsed()));
        }
        line(
            &mut out,
            "sequential read, 1 MiB fetches (page cache)",
            disk,
            logr,
            "MiB/s",
        );
    }
    {
        let d = bench_dir();
        let empty = d.path().join("empty");
        PartitionLog::open(&empty, config(FlushPolicy::Never), 0)
            .unwrap()
            .close()
            .unwrap();
        let big = d.path().join("big");
        fill(&big, OPEN_LOG_BYTES, OPEN_SEGMENT_BYTES)
            .close()
            .unwrap();
        let avg =
            |dir: &Path, clean: bool| (0..5).map(|_| time_open(dir, clean)).sum::<Duration>() / 5;
        let e = avg(&empty, true);
        let c = avg(&big, true);
        let u = avg(&big, false);
        out.push_str(&format!(
            "open: empty {:.2} ms, 1 GiB after clean shutdown {:.2} ms, 1 GiB after crash {:.2} ms ({} MiB segments)\n",
            e.as_secs_f64() * 1e3,
            c.as_secs_f64() * 1e3,
            u.as_secs_f64() * 1e3,
            OPEN_SEGMENT_BYTES >> 20
        ));
    }
    {
        let buf = batch(1024);
        let start = Instant::now();
        let mut x = 0u32;
        for _ in 0..512 {
            x ^= crc32c::crc32c(&buf);
        }
        let took = start.elapsed();
        std::hint::black_box(x);
        out.push_str(&format!(
            "crc32c (append validation) {:.0} MiB/s\n",
            mib_per_s(512 * buf.len() as u64, took)
        ));
    }
    println!("\n==== cairn-log vs raw disk (same machine, same run) ====\n{out}");
    let _ = std::io::stdout().flush();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listing = args.iter().any(|a| a == "--list" || a == "--test");
    let mut c = Criterion::default().configure_from_args();
    if std::env::var("CAIRN_BENCH_SKIP_CRITERION").is_err() {
        bench_append(&mut c, "append_never", FlushPolicy::Never, false);
        bench_append(
            &mut c,
            "append_group_commit",
            FlushPolicy::GroupCommit,
            true,
        );
        bench_read(&mut c);
        bench_open(&mut c);
    }
    c.final_summary();
    if !listing {
        summary();
    }
}
