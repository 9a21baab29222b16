//! `report DIR`: every `*.json` result in a directory side by side, each throughput also
//! as a percentage of this machine's limits measured in the same directory (the same
//! `just bench` run):
//!
//! - `%loop` — of the `raw-loopback` figure (one TCP stream over 127.0.0.1);
//! - `%disk+sync` — of the `raw-disk --fdatasync` figure with the largest block, the
//!   ceiling for durable (acks=all, group-commit) produce;
//! - `%disk` — of the plain `raw-disk` figure with the largest block.
//!
//! Results are listed in file-name order, so a script controls the order by naming.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::result::{BenchResult, fmt_count, fmt_us};

/// Reads every `*.json` file in `dir` (sorted by name) as a [`BenchResult`].
pub fn load_dir(dir: &Path) -> Result<Vec<BenchResult>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
        })
        .collect()
}

/// The reference results the ratios are taken against.
struct References<'a> {
    loopback: Option<&'a BenchResult>,
    disk_sync: Option<&'a BenchResult>,
    disk: Option<&'a BenchResult>,
}

impl<'a> References<'a> {
    fn find(results: &'a [BenchResult]) -> Self {
        let disk = |sync: bool| {
            results
                .iter()
                .filter(|r| r.kind == "raw-disk")
                .filter(|r| r.parameters["fdatasync"].as_bool() == Some(sync))
                .max_by(|a, b| {
                    let block = |r: &BenchResult| r.parameters["block_bytes"].as_u64().unwrap_or(0);
                    block(a)
                        .cmp(&block(b))
                        .then(a.figures.mb_per_s.total_cmp(&b.figures.mb_per_s))
                })
        };
        Self {
            loopback: results
                .iter()
                .filter(|r| r.kind == "raw-loopback")
                .max_by(|a, b| a.figures.mb_per_s.total_cmp(&b.figures.mb_per_s)),
            disk_sync: disk(true),
            disk: disk(false),
        }
    }
}

/// `part` as a percentage of the reference's MB/s, or `-`.
fn percent_of(part: f64, reference: Option<&BenchResult>) -> String {
    match reference.map(|r| r.figures.mb_per_s) {
        Some(whole) if whole > 0.0 => format!("{:.1}%", 100.0 * part / whole),
        _ => "-".into(),
    }
}

/// The side-by-side table of `results`.
pub fn render(results: &[BenchResult]) -> String {
    let refs = References::find(results);
    let header = [
        "name",
        "kind",
        "records/s",
        "MB/s",
        "%loop",
        "%disk+sync",
        "%disk",
        "latency",
        "p50",
        "p99",
        "p99.9",
        "max",
        "load 1m",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in results {
        let f = &r.figures;
        let mut row = vec![
            r.name.clone(),
            r.kind.clone(),
            f.records_per_s.map_or("-".into(), fmt_count),
            format!("{:.1}", f.mb_per_s),
            percent_of(f.mb_per_s, refs.loopback),
            percent_of(f.mb_per_s, refs.disk_sync),
            percent_of(f.mb_per_s, refs.disk),
        ];
        match f.headline_latency() {
            Some((what, p)) => row.extend([
                what.to_string(),
                fmt_us(p.p50_us),
                fmt_us(p.p99_us),
                fmt_us(p.p999_us),
                fmt_us(p.max_us),
            ]),
            None => row.extend(std::iter::repeat_n("-".to_string(), 5)),
        }
        let load = |v: &[f64]| v.first().map_or("?".into(), |l| format!("{l:.1}"));
        row.push(format!(
            "{}→{}",
            load(&r.conditions.loadavg_start),
            load(&r.conditions.loadavg_end)
        ));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                let pad = w - cell.chars().count();
                if c < 2 || c == 7 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if i == 0 {
            let _ = writeln!(
                out,
                "{}",
                "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
            );
        }
    }
    let describe = |what: &str, r: Option<&BenchResult>| match r {
        Some(r) => format!("{what} = {} ({:.1} MB/s)", r.name, r.figures.mb_per_s),
        None => format!("{what} = none in this directory"),
    };
    let _ = writeln!(
        out,
        "\nreferences: {}; {}; {}",
        describe("%loop", refs.loopback),
        describe("%disk+sync", refs.disk_sync),
        describe("%disk", refs.disk)
    );
    let _ = writeln!(
        out,
        "MB = 10^6 record bytes (key + value); latency: ack = scheduled send → delivery report, \
         end_to_end = scheduled send → consumed, fdatasync = one call"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{Conditions, Figures, Percentiles};

    fn result(name: &str, kind: &str, parameters: serde_json::Value, mb_per_s: f64) -> BenchResult {
        BenchResult {
            name: name.into(),
            kind: kind.into(),
            parameters,
            figures: Figures {
                mb_per_s,
                ..Figures::default()
            },
            conditions: Conditions {
                loadavg_start: vec![1.0, 2.0, 3.0],
                loadavg_end: vec![1.5, 2.0, 3.0],
                ..Conditions::default()
            },
        }
    }

    #[test]
    fn ratios_use_the_largest_block_of_each_disk_kind_and_the_loopback() {
        let mut produce = result("p", "produce", serde_json::json!({}), 100.0);
        produce.figures.records_per_s = Some(97_656.0);
        produce.figures.latency.insert(
            "ack".into(),
            Percentiles {
                count: 10,
                p50_us: 900.0,
                p99_us: 2_500.0,
                p999_us: 12_000.0,
                max_us: 20_000.0,
                ..Percentiles::default()
            },
        );
        let results = vec![
            result("loop", "raw-loopback", serde_json::json!({}), 1000.0),
            result(
                "disk-16k-sync",
                "raw-disk",
                serde_json::json!({"fdatasync": true, "block_bytes": 16384}),
                50.0,
            ),
            result(
                "disk-1m-sync",
                "raw-disk",
                serde_json::json!({"fdatasync": true, "block_bytes": 1048576}),
                400.0,
            ),
            result(
                "disk-1m",
                "raw-disk",
                serde_json::json!({"fdatasync": false, "block_bytes": 1048576}),
                800.0,
            ),
            produce,
        ];
        let table = render(&results);
        let line = table.lines().find(|l| l.starts_with("p ")).unwrap();
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "p",
                "produce",
                "97,656",
                "100.0",
                "10.0%",
                "25.0%",
                "12.5%",
                "ack",
                "900µs",
                "2500µs",
                "12.0ms",
                "20.0ms",
                "1.0→1.5"
            ]
        );
        assert!(
            table.contains("%disk+sync = disk-1m-sync (400.0 MB/s)"),
            "{table}"
        );
    }

    #[test]
    fn missing_references_show_dashes() {
        let table = render(&[result("c", "consume", serde_json::json!({}), 10.0)]);
        let line = table.lines().find(|l| l.starts_with("c ")).unwrap();
        assert_eq!(line.split_whitespace().filter(|c| *c == "-").count(), 9);
        assert!(table.contains("%loop = none in this directory"));
    }
}
