//! DescribeLogDirs (key 35, KIP-113 / KIP-827): the partitions this broker stores, with
//! their size on disk, as `kafka-log-dirs.sh`, the admin clients and UIs that show topic
//! sizes ask for them. Each broker answers for itself (clients ask every broker).
//!
//! Cairn has one log directory, `--data-dir`; it is the one result, named by its absolute
//! path. Per partition: `partition_size` = the bytes of its segment files, `offset_lag` =
//! how far the log end offset is below the high watermark (0 on a leader; Kafka's
//! definition for a current, not future, log), `is_future_key` false (no log-dir moves).
//! `topics` null lists every hosted partition; otherwise the named partitions this broker
//! hosts (others are left out, as in Kafka). v4's `total_bytes` / `usable_bytes` come from
//! `statvfs` of the directory (-1 if that fails). A directory that cannot be read at all
//! is not possible here: the broker stops when its data directory fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;

/// Total and available bytes of the file system holding `dir`, as `df` reports them
/// (available = what an unprivileged writer may still use), or -1 each if unknown.
fn disk_space(dir: &Path) -> (i64, i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (-1, -1);
    };
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `s` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), s.as_mut_ptr()) } != 0 {
        return (-1, -1);
    }
    // SAFETY: statvfs returned 0, so it filled `s`.
    let s = unsafe { s.assume_init() };
    let block = s.f_frsize as i64;
    (
        (s.f_blocks as i64).saturating_mul(block),
        (s.f_bavail as i64).saturating_mul(block),
    )
}

pub async fn handle(
    ctx: RequestContext,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let wanted: Option<BTreeSet<(String, i32)>> = request.topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.to_string(), p)))
            .collect()
    });
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for p in ctx.broker.replicas.all() {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.contains(&(p.topic.clone(), p.index)))
        {
            continue;
        }
        let (size, end) = p.with_log(|log| (log.size_bytes(), log.log_end_offset()));
        topics.entry(p.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p.index)
                .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                .with_offset_lag((p.high_watermark() - end).max(0))
                .with_is_future_key(false),
        );
    }
    let dir = &ctx.broker.config.data_dir;
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(
            topics
                .into_iter()
                .map(|(name, mut partitions)| {
                    partitions.sort_by_key(|p| p.partition_index);
                    DescribeLogDirsTopic::default()
                        .with_name(StrBytes::from_string(name).into())
                        .with_partitions(partitions)
                })
                .collect(),
        );
    if ctx.version >= 4 {
        let (total, usable) = disk_space(&dir);
        result = result.with_total_bytes(total).with_usable_bytes(usable);
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}
