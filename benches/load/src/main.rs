//! `cairn-bench`: the end-to-end load tool behind `just bench`.
//!
//! It drives any Kafka-compatible broker over the Kafka protocol with librdkafka (the
//! `rdkafka` crate) — `produce`, `consume`, `end-to-end` — and measures the machine's own
//! limits in the same run — `raw-disk`, `raw-loopback` — so that every broker figure can
//! be read as a fraction of what the hardware allows. Each subcommand prints a table and,
//! with `--json FILE`, writes a [`result::BenchResult`]; `report DIR` puts a directory of
//! them side by side with those ratios.
//!
//! ```sh
//! cairn-bench raw-disk --dir /tmp --block-bytes 1MiB --total-bytes 1GiB --fdatasync
//! cairn-bench produce --bootstrap 127.0.0.1:9092 --topic t --partitions 6 \
//!     --records 1000000 --acks all --json bench-results/produce.json
//! cairn-bench end-to-end --topic e2e --rate 10000 --duration-s 10 --linger-ms 0
//! cairn-bench report bench-results
//! ```
//!
//! It is a client: it owns no broker state and never reads broker files. Latencies are
//! open-loop (see `produce`), so a stalled broker cannot hide behind a stalled sender.

mod client;
mod consume;
mod end_to_end;
mod produce;
mod raw;
mod report;
mod result;

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// Command line of `cairn-bench`.
#[derive(Debug, Parser)]
#[command(
    name = "cairn-bench",
    about = "Load tool for Kafka-compatible brokers, with this machine's disk and loopback limits"
)]
struct Cli {
    #[command(flatten)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

/// Where a run's result goes besides the terminal; global, so given after the subcommand.
#[derive(Debug, Clone, Args)]
struct Output {
    /// Write the result as a JSON object to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// The run's name in the JSON and in `report` (default: the subcommand).
    #[arg(long, global = true)]
    name: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce records and measure throughput and produce→ack latency.
    Produce(produce::ProduceArgs),
    /// Read a topic from the beginning of every partition and measure throughput.
    Consume(consume::ConsumeArgs),
    /// Produce time-stamped records at a rate and measure produce→consume latency.
    EndToEnd(produce::ProduceArgs),
    /// Sequential writes (optionally fdatasync'd) to a scratch file: the disk's limit.
    RawDisk(raw::RawDiskArgs),
    /// One TCP stream over 127.0.0.1: the loopback limit.
    RawLoopback(raw::RawLoopbackArgs),
    /// Print every JSON result in DIR side by side, with ratios to the raw figures.
    Report {
        /// Directory of `--json` results.
        dir: PathBuf,
    },
    /// Print a TCP port on 127.0.0.1 that is free right now (for scripts).
    #[command(hide = true)]
    FreePort,
}

fn main() -> Result<()> {
    let Cli { output, command } = Cli::parse();
    let result = match &command {
        Command::Produce(args) => produce::produce(args, &output.name_or("produce"))?,
        Command::Consume(args) => consume::consume(args, &output.name_or("consume"))?,
        Command::EndToEnd(args) => end_to_end::end_to_end(args, &output.name_or("end-to-end"))?,
        Command::RawDisk(args) => raw::raw_disk(args, &output.name_or("raw-disk"))?,
        Command::RawLoopback(args) => raw::raw_loopback(args, &output.name_or("raw-loopback"))?,
        Command::Report { dir } => {
            print!("{}", report::render(&report::load_dir(dir)?));
            return Ok(());
        }
        Command::FreePort => {
            println!("{}", TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
            return Ok(());
        }
    };
    print!("{}", result.table());
    if let Some(path) = &output.json {
        result.write_json(path)?;
    }
    Ok(())
}

impl Output {
    fn name_or(&self, default: &str) -> String {
        self.name.clone().unwrap_or_else(|| default.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn produce_arguments_parse_with_output_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "cairn-bench",
            "produce",
            "--topic",
            "t",
            "--acks",
            "1",
            "--record-bytes",
            "1KiB",
            "--rate",
            "10000",
            "--keys",
            "on",
            "--set",
            "queue.buffering.max.messages=10",
            "--json",
            "out/p.json",
            "--name",
            "p1",
        ])
        .unwrap();
        assert_eq!(cli.output.json, Some(PathBuf::from("out/p.json")));
        assert_eq!(cli.output.name_or("produce"), "p1");
        let Command::Produce(args) = cli.command else {
            panic!("not produce")
        };
        assert_eq!(args.acks, produce::Acks::One);
        assert_eq!(args.record_bytes, 1024);
        assert_eq!(args.rate, Some(10_000.0));
        assert_eq!(args.keys, produce::Switch::On);
        let parameters = serde_json::to_value(&args).unwrap();
        assert_eq!(parameters["acks"], "1");
        assert_eq!(parameters["topic"], "t");
        assert_eq!(parameters["keys"], "on");
    }

    #[test]
    fn records_and_duration_exclude_each_other() {
        let parsed = Cli::try_parse_from([
            "cairn-bench",
            "produce",
            "--records",
            "10",
            "--duration-s",
            "5",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn raw_disk_sizes_take_suffixes() {
        let cli = Cli::try_parse_from([
            "cairn-bench",
            "raw-disk",
            "--dir",
            "/tmp",
            "--block-bytes",
            "16KiB",
            "--total-bytes",
            "256MiB",
            "--fdatasync",
        ])
        .unwrap();
        let Command::RawDisk(args) = cli.command else {
            panic!("not raw-disk")
        };
        assert_eq!((args.block_bytes, args.total_bytes), (16 << 10, 256 << 20));
        assert!(args.fdatasync);
    }
}
