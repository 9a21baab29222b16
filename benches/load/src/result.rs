//! One benchmark run's outcome: the JSON object written by `--json FILE`, the human table
//! printed after every run, and the helpers every subcommand shares to fill them in
//! (latency histograms, byte-size arguments, the machine's load average).
//!
//! Units are fixed so that results from different runs and machines compare directly:
//! megabytes are 10^6 bytes (`mb_per_s`), latencies are microseconds (`*_us`), and
//! "bytes" are record bytes (key plus value), not wire bytes — protocol framing and batch
//! headers are overhead the broker has to carry, so they are not counted as work done.
//!
//! The JSON shape is `{name, kind, parameters, figures, conditions}`; `report` reads it
//! back, so fields are only ever added, never renamed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency a histogram holds, in nanoseconds (one hour): anything slower is a
/// hang, and is recorded as this value rather than lost.
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// Significant decimal digits kept by every latency histogram (0.1% resolution).
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// A fresh histogram of nanosecond latencies.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("static histogram bounds are valid")
}

/// Everything one run produced; serialised as the `--json` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    /// The run's name (`--name`, else the subcommand), the first column of `report`.
    pub name: String,
    /// The subcommand: `produce`, `consume`, `end-to-end`, `raw-disk` or `raw-loopback`.
    pub kind: String,
    /// The arguments the run was given, as parsed.
    pub parameters: serde_json::Value,
    /// What was measured.
    pub figures: Figures,
    /// What else was happening on the machine.
    pub conditions: Conditions,
}

/// The measured figures of one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Figures {
    /// Records completed (acknowledged, consumed); absent for raw-disk and raw-loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Record bytes (key plus value) or raw bytes moved.
    pub bytes: u64,
    /// Seconds from the first operation to the last completion.
    pub elapsed_s: f64,
    /// `records / elapsed_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_per_s: Option<f64>,
    /// `bytes / elapsed_s / 10^6`.
    pub mb_per_s: f64,
    /// Operations that failed (delivery errors, consume errors).
    #[serde(default)]
    pub errors: u64,
    /// Latency distributions by what they time: `ack` (scheduled send → delivery report),
    /// `end_to_end` (scheduled send → consumed), `fdatasync` (one call).
    #[serde(default)]
    pub latency: BTreeMap<String, Percentiles>,
    /// Anything else worth keeping, in plain numbers (e.g. `first_record_s`).
    #[serde(default)]
    pub extra: BTreeMap<String, f64>,
}

impl Figures {
    /// Fills in the rates from `records`, `bytes` and `elapsed_s`.
    pub fn with_rates(mut self) -> Self {
        let elapsed_s = self.elapsed_s.max(f64::MIN_POSITIVE);
        self.records_per_s = self.records.map(|r| r as f64 / elapsed_s);
        self.mb_per_s = self.bytes as f64 / elapsed_s / 1e6;
        self
    }

    /// The latency distribution `report` shows for this run: end-to-end if measured,
    /// else the produce acknowledgement, else fdatasync.
    pub fn headline_latency(&self) -> Option<(&str, &Percentiles)> {
        ["end_to_end", "ack", "fdatasync"]
            .into_iter()
            .find_map(|k| self.latency.get_key_value(k))
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// A latency distribution summarised in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    /// Summarises a histogram of nanoseconds.
    pub fn from_ns(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1e3;
        Self {
            count: h.len(),
            mean_us: h.mean() / 1e3,
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// The machine's state around a run: on a shared machine the figures mean little
/// without it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Conditions {
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
    /// 1-, 5- and 15-minute load averages from /proc/loadavg before the run.
    pub loadavg_start: Vec<f64>,
    /// The same after the run.
    pub loadavg_end: Vec<f64>,
    /// Online CPUs.
    pub cpus: usize,
}

impl Conditions {
    /// Notes the time and load before a run; call [`Conditions::finish`] after it.
    pub fn start() -> Self {
        Self {
            started_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            loadavg_start: loadavg(),
            loadavg_end: Vec::new(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }

    /// Notes the load after a run.
    pub fn finish(mut self) -> Self {
        self.loadavg_end = loadavg();
        self
    }
}

/// The three load averages, or nothing where /proc/loadavg does not exist.
fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            s.split_whitespace()
                .take(3)
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a byte count: a plain integer or one with a binary suffix
/// (`K`/`KiB`, `M`/`MiB`, `G`/`GiB`, all powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .with_context(|| format!("{s:?} is not a byte count"))?;
    let unit: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        other => bail!("unknown byte suffix {other:?} in {s:?} (use K/KiB, M/MiB, G/GiB)"),
    };
    n.checked_mul(unit)
        .with_context(|| format!("{s:?} overflows 64 bits"))
}

/// A latency for a table cell: microseconds below 10 ms, else milliseconds.
pub fn fmt_us(us: f64) -> String {
    if us < 10_000.0 {
        format!("{us:.0}µs")
    } else {
        format!("{:.1}ms", us / 1e3)
    }
}

/// A throughput with thousands separators and no decimals (`1,234,567`).
pub fn fmt_count(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl BenchResult {
    /// The human view of one run, printed after it finishes.
    pub fn table(&self) -> String {
        let f = &self.figures;
        let mut out = String::new();
        let _ = writeln!(out, "== {} ({})", self.name, self.kind);
        if let Some(records) = f.records {
            let _ = writeln!(
                out,
                "  records     {:>14}   {:>12} records/s",
                fmt_count(records as f64),
                fmt_count(f.records_per_s.unwrap_or(0.0))
            );
        }
        let _ = writeln!(
            out,
            "  bytes       {:>14}   {:>12.1} MB/s   in {:.2} s",
            fmt_count(f.bytes as f64),
            f.mb_per_s,
            f.elapsed_s
        );
        if f.errors > 0 {
            let _ = writeln!(out, "  errors      {:>14}", f.errors);
        }
        for (what, p) in &f.latency {
            let _ = writeln!(
                out,
                "  {what:<11} p50 {:>9}  p99 {:>9}  p99.9 {:>9}  max {:>9}  ({} samples)",
                fmt_us(p.p50_us),
                fmt_us(p.p99_us),
                fmt_us(p.p999_us),
                fmt_us(p.max_us),
                p.count
            );
        }
        for (k, v) in &f.extra {
            let _ = writeln!(out, "  {k:<11} {v:.3}");
        }
        let _ = writeln!(
            out,
            "  load        {:?} -> {:?} on {} CPUs",
            self.conditions.loadavg_start, self.conditions.loadavg_end, self.conditions.cpus
        );
        out
    }

    /// Writes the JSON object to `path`, creating its directory.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("16KiB").unwrap(), 16 * 1024);
        assert_eq!(parse_bytes("16k").unwrap(), 16 * 1024);
        assert_eq!(parse_bytes("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("2G").unwrap(), 2 << 30);
        assert!(parse_bytes("1TB").is_err());
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999999G").is_err());
    }

    #[test]
    fn counts_and_latencies_format_for_tables() {
        assert_eq!(fmt_count(0.0), "0");
        assert_eq!(fmt_count(999.4), "999");
        assert_eq!(fmt_count(1_234_567.0), "1,234,567");
        assert_eq!(fmt_us(130.2), "130µs");
        assert_eq!(fmt_us(12_345.0), "12.3ms");
    }

    #[test]
    fn percentiles_come_from_nanoseconds() {
        let mut h = latency_histogram();
        for ns in 1..=1000u64 {
            h.record(ns * 1000).unwrap();
        }
        let p = Percentiles::from_ns(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50_us - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.max_us - 1000.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn results_round_trip_through_json() {
        let r = BenchResult {
            name: "x".into(),
            kind: "produce".into(),
            parameters: serde_json::json!({"acks": "all"}),
            figures: Figures {
                records: Some(10),
                bytes: 10_000_000,
                elapsed_s: 2.0,
                ..Figures::default()
            }
            .with_rates(),
            conditions: Conditions::default(),
        };
        assert_eq!(r.figures.mb_per_s, 5.0);
        assert_eq!(r.figures.records_per_s, Some(5.0));
        let back: BenchResult = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.figures.mb_per_s, 5.0);
        assert!(r.table().contains("5.0 MB/s"));
    }
}
