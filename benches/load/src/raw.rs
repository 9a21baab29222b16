//! `raw-disk` and `raw-loopback`: this machine's limits, measured in the same run as the
//! broker so that every broker figure can be read as a fraction of them.
//!
//! `raw-disk` appends blocks to a new file with plain `write(2)` through the page cache —
//! the way Cairn's log writes — optionally calling `fdatasync(2)` after every block (the
//! durable path's cost: group commit at its best syncs once per block of this size). The
//! clock includes a final `fdatasync`, so the no-sync figure is what the disk absorbs,
//! not only what the page cache accepts. The file is removed afterwards; the directory
//! should be on the broker's data disk.
//!
//! `raw-loopback` pushes bytes through one TCP connection over 127.0.0.1 between two
//! threads of this process: the ceiling for one client connection to a local broker.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde::Serialize;

use crate::client::fill_letters;
use crate::result::{
    BenchResult, Conditions, Figures, Percentiles, latency_histogram, parse_bytes,
};

/// Arguments of `raw-disk`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct RawDiskArgs {
    /// Directory to write the scratch file in (use the broker's data disk).
    #[arg(long)]
    pub dir: PathBuf,
    /// Bytes per write call (K/KiB, M/MiB, G/GiB suffixes accepted).
    #[arg(long, value_parser = parse_bytes, default_value = "1MiB")]
    pub block_bytes: u64,
    /// Bytes to write in total.
    #[arg(long, value_parser = parse_bytes, default_value = "1GiB")]
    pub total_bytes: u64,
    /// Call fdatasync after every block.
    #[arg(long)]
    pub fdatasync: bool,
    /// Stop early after this many seconds (the figures cover what was written).
    #[arg(long, default_value_t = 20.0)]
    pub duration_s: f64,
}

/// Arguments of `raw-loopback`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct RawLoopbackArgs {
    /// Bytes to send in total (K/KiB, M/MiB, G/GiB suffixes accepted).
    #[arg(long, value_parser = parse_bytes, default_value = "4GiB")]
    pub total_bytes: u64,
    /// Bytes per write and read call.
    #[arg(long, value_parser = parse_bytes, default_value = "1MiB")]
    pub block_bytes: u64,
}

/// The `raw-disk` subcommand.
pub fn raw_disk(args: &RawDiskArgs, name: &str) -> Result<BenchResult> {
    if args.block_bytes == 0 || args.total_bytes < args.block_bytes {
        bail!("need 0 < --block-bytes <= --total-bytes");
    }
    let conditions = Conditions::start();
    let path = args
        .dir
        .join(format!("cairn-bench-raw-disk-{}.tmp", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let result = (|| -> Result<(u64, Duration, hdrhistogram::Histogram<u64>, Duration)> {
        let mut block = vec![0u8; usize::try_from(args.block_bytes)?];
        fill_letters(&mut block, 0xd15c);
        let mut syncs = latency_histogram();
        let deadline = Duration::from_secs_f64(args.duration_s);
        let t0 = Instant::now();
        let mut written = 0u64;
        while written + args.block_bytes <= args.total_bytes && t0.elapsed() < deadline {
            file.write_all(&block).context("write")?;
            written += args.block_bytes;
            if args.fdatasync {
                let s = Instant::now();
                file.sync_data().context("fdatasync")?;
                syncs.saturating_record((s.elapsed().as_nanos() as u64).max(1));
            }
        }
        let s = Instant::now();
        file.sync_data().context("final fdatasync")?;
        let final_sync = s.elapsed();
        Ok((written, t0.elapsed(), syncs, final_sync))
    })();
    drop(file);
    let _ = std::fs::remove_file(&path);
    let (written, elapsed, syncs, final_sync) = result?;

    let mut figures = Figures {
        bytes: written,
        elapsed_s: elapsed.as_secs_f64(),
        ..Figures::default()
    }
    .with_rates();
    if args.fdatasync {
        figures
            .latency
            .insert("fdatasync".into(), Percentiles::from_ns(&syncs));
    }
    figures
        .extra
        .insert("final_sync_s".into(), final_sync.as_secs_f64());
    Ok(BenchResult {
        name: name.to_string(),
        kind: "raw-disk".into(),
        parameters: serde_json::to_value(args)?,
        figures,
        conditions: conditions.finish(),
    })
}

/// The `raw-loopback` subcommand.
pub fn raw_loopback(args: &RawLoopbackArgs, name: &str) -> Result<BenchResult> {
    if args.block_bytes == 0 {
        bail!("--block-bytes must be positive");
    }
    let conditions = Conditions::start();
    let block_bytes = usize::try_from(args.block_bytes)?;
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> Result<(u64, Instant)> {
        let (mut stream, _) = listener.accept()?;
        let mut buf = vec![0u8; block_bytes];
        let mut received = 0u64;
        loop {
            match stream.read(&mut buf)? {
                0 => return Ok((received, Instant::now())),
                n => received += n as u64,
            }
        }
    });
    let mut block = vec![0u8; block_bytes];
    fill_letters(&mut block, 0x100b);
    let mut stream = TcpStream::connect(address).context("connecting over loopback")?;
    stream.set_nodelay(true)?;
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < args.total_bytes {
        let n = block_bytes.min(usize::try_from(args.total_bytes - sent)?);
        stream.write_all(&block[..n])?;
        sent += n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    let (received, end) = reader
        .join()
        .map_err(|_| anyhow!("the reader thread panicked"))??;
    if received != sent {
        bail!("sent {sent} bytes but received {received}");
    }
    let figures = Figures {
        bytes: received,
        elapsed_s: (end - t0).as_secs_f64(),
        ..Figures::default()
    }
    .with_rates();
    Ok(BenchResult {
        name: name.to_string(),
        kind: "raw-loopback".into(),
        parameters: serde_json::to_value(args)?,
        figures,
        conditions: conditions.finish(),
    })
}
