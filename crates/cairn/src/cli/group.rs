//! `cairn group list|describe|lag|reset-offsets|delete`: consumer-group administration
//! over the Kafka protocol, against any Kafka-compatible broker.
//!
//! Every per-group request goes to the group's coordinator, found with FindCoordinator
//! (batched `coordinator_keys` from v4, `key` before) and retried while the coordinator
//! is loading or moving (COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS,
//! NOT_COORDINATOR). ListGroups goes to every broker, since each lists only the groups it
//! coordinates, as Kafka's admin client does.
//!
//! Output mirrors `kafka-consumer-groups.sh`: `lag` prints TOPIC PARTITION CURRENT-OFFSET
//! LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID for every partition that has a committed
//! offset or is assigned to a member; `describe` adds the group's state, assignor and
//! members, whose assignments are decoded from the consumer protocol's
//! ConsumerProtocolAssignment bytes. `reset-offsets` prints its plan and commits it only
//! with `--execute`, and then only while the group has no members (Empty or Dead), as
//! Kafka requires: the commit uses generation -1 and no member id.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest,
    ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::client::{Cluster, Connection, explain, topic_name};

/// Inspect and administer consumer groups on any Kafka-compatible broker.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  cairn group list --state Stable,Empty
  cairn group describe orders-projection
  cairn group lag orders-projection
  cairn group reset-offsets orders-projection --topic orders --to-earliest --execute
  cairn group delete orders-projection")]
pub struct GroupArgs {
    /// Bootstrap broker host:port.
    #[arg(
        short,
        long,
        default_value = "127.0.0.1:9092",
        env = "CAIRN_BOOTSTRAP",
        global = true
    )]
    pub bootstrap: String,
    /// How long to wait for each broker response.
    #[arg(long, default_value_t = 30_000, value_name = "MS", global = true)]
    pub request_timeout_ms: u64,
    #[command(subcommand)]
    pub command: GroupCommand,
}

/// The group subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List group names (with their states if --state is given).
    List(ListArgs),
    /// Show a group's state, assignor, members with their partitions, and its lag.
    Describe(DescribeArgs),
    /// Committed offset, log end offset and lag of each partition of a group.
    Lag(LagArgs),
    /// Move a group's committed offsets (a dry run unless --execute).
    ResetOffsets(ResetArgs),
    /// Delete groups that have no members, with their committed offsets.
    Delete(DeleteArgs),
}

/// `cairn group list`
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only groups in these states (comma-separated: Stable, Empty, PreparingRebalance,
    /// CompletingRebalance, Dead); `--state` alone prints every group with its state.
    #[arg(long = "state", value_name = "STATES", num_args = 0..=1, value_delimiter = ',')]
    pub states: Option<Vec<String>>,
}

/// `cairn group describe GROUP`
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// Group id.
    pub group: String,
}

/// `cairn group lag GROUP`
#[derive(clap::Args, Debug)]
pub struct LagArgs {
    /// Group id.
    pub group: String,
}

/// `cairn group reset-offsets GROUP ...`
#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])
))]
pub struct ResetArgs {
    /// Group id.
    pub group: String,
    /// Topic to reset, all its partitions or `TOPIC:0,1,2`; repeatable.
    #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]", required_unless_present = "all_topics", value_parser = parse_topic_partitions)]
    pub topics: Vec<(String, Option<Vec<i32>>)>,
    /// Every topic the group has committed offsets for.
    #[arg(long, conflicts_with = "topics")]
    pub all_topics: bool,
    /// To the log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// To the log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset (clamped to the log's range).
    #[arg(long, value_name = "OFFSET", value_parser = clap::value_parser!(i64).range(0..))]
    pub to_offset: Option<i64>,
    /// To the first offset at or after this time (RFC 3339, e.g. 2026-11-30T12:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339_ms)]
    pub to_datetime: Option<i64>,
    /// Move the committed offset by N (negative: back), clamped to the log's range.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Commit the new offsets; without it, only print the plan.
    #[arg(long)]
    pub execute: bool,
}

/// `cairn group delete GROUP...`
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Group ids.
    #[arg(required = true)]
    pub groups: Vec<String>,
}

/// Attempts at a coordinator that is loading or moving before giving up.
const COORDINATOR_RETRIES_MAX: u32 = 20;
/// Pause between those attempts.
const COORDINATOR_RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// ListOffsets timestamp meaning "the earliest offset".
const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp meaning "the log end offset".
const LATEST_TIMESTAMP: i64 = -1;
/// Group states a ListGroups filter may name (classic and KIP-848 groups).
const GROUP_STATES: &[&str] = &[
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
    "Empty",
    "Assigning",
    "Reconciling",
];

/// Runs `cairn group ...`.
pub async fn group(args: GroupArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let mut cluster = Cluster::connect(&args.bootstrap, timeout).await?;
    match args.command {
        GroupCommand::List(list) => list_groups(&mut cluster, list).await,
        GroupCommand::Describe(d) => describe_group(&mut cluster, &d.group, timeout).await,
        GroupCommand::Lag(lag) => lag_command(&mut cluster, &lag.group, timeout).await,
        GroupCommand::ResetOffsets(reset) => reset_offsets(&mut cluster, reset, timeout).await,
        GroupCommand::Delete(delete) => delete_groups(&mut cluster, delete, timeout).await,
    }
}

/// `explain` plus what to do about the group errors the generic hints do not cover.
fn explain_group(code: i16, message: Option<&str>) -> String {
    let text = explain(code, message);
    let hint = match ResponseError::try_from_code(code) {
        Some(ResponseError::GroupIdNotFound) => {
            "no such group: check the name with `cairn group list`"
        }
        Some(ResponseError::NonEmptyGroup) => {
            "the group still has members: stop its consumers first (`cairn group describe` lists them)"
        }
        Some(ResponseError::InvalidGroupId) => "the group id must not be empty",
        Some(
            ResponseError::CoordinatorNotAvailable
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::NotCoordinator,
        ) => "the group coordinator is starting or moving; retry in a moment",
        Some(ResponseError::GroupAuthorizationFailed) => {
            "the broker requires authorization, but this client connects without SASL or TLS"
        }
        Some(ResponseError::UnknownMemberId | ResponseError::IllegalGeneration) => {
            "the group is active: stop its consumers before changing its offsets"
        }
        _ => return text,
    };
    format!("{text} — {hint}")
}

/// Errors that mean "find the coordinator again and retry".
fn coordinator_moving(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress
                | ResponseError::NotCoordinator
        )
    )
}

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_owned()))
}

/// A connection to the coordinator of one group.
struct Coordinator {
    group: String,
    connection: Connection,
    timeout: Duration,
}

impl Coordinator {
    /// FindCoordinator on the bootstrap broker, then a connection to the answer.
    async fn find(
        cluster: &mut Cluster,
        group: &str,
        timeout: Duration,
    ) -> anyhow::Result<Coordinator> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let connection = cluster.bootstrap();
            let version = connection.version::<FindCoordinatorRequest>()?;
            let mut request = FindCoordinatorRequest::default();
            if version >= 4 {
                request.coordinator_keys = vec![StrBytes::from_string(group.to_owned())];
            } else {
                request.key = StrBytes::from_string(group.to_owned());
            }
            let response = connection.send_at(&request, version).await?;
            let (code, message, host, port) = if version >= 4 {
                let c = response
                    .coordinators
                    .into_iter()
                    .find(|c| c.key.as_str() == group)
                    .context("FindCoordinator response does not mention the group")?;
                (c.error_code, c.error_message, c.host, c.port)
            } else {
                (
                    response.error_code,
                    response.error_message,
                    response.host,
                    response.port,
                )
            };
            if code == 0 {
                let addr = format!("{host}:{port}");
                let connection = Connection::connect(&addr, timeout)
                    .await
                    .with_context(|| format!("the coordinator of group '{group}' at {addr}"))?;
                return Ok(Coordinator {
                    group: group.to_owned(),
                    connection,
                    timeout,
                });
            }
            if coordinator_moving(code) && attempt < COORDINATOR_RETRIES_MAX {
                tokio::time::sleep(COORDINATOR_RETRY_BACKOFF).await;
                continue;
            }
            bail!(
                "cannot find the coordinator of group '{group}': {}",
                explain_group(code, message.as_deref())
            );
        }
    }

    /// After a NOT_COORDINATOR-like error: wait, then find the coordinator again.
    async fn refind(&mut self, cluster: &mut Cluster) -> anyhow::Result<()> {
        tokio::time::sleep(COORDINATOR_RETRY_BACKOFF).await;
        *self = Coordinator::find(cluster, &self.group, self.timeout).await?;
        Ok(())
    }

    /// DescribeGroups for this group.
    async fn describe(&mut self, cluster: &mut Cluster) -> anyhow::Result<GroupDescription> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = DescribeGroupsRequest::default().with_groups(vec![group_id(&self.group)]);
            let response = self.connection.send(&request).await?;
            let g = response
                .groups
                .into_iter()
                .find(|g| g.group_id.0.as_str() == self.group)
                .context("DescribeGroups response does not mention the group")?;
            if coordinator_moving(g.error_code) && attempt < COORDINATOR_RETRIES_MAX {
                self.refind(cluster).await?;
                continue;
            }
            if g.error_code == ResponseError::GroupIdNotFound.code() {
                // DescribeGroups v6 (KIP-1043) reports a group that does not exist as
                // GROUP_ID_NOT_FOUND; earlier versions as the state Dead.
                return Ok(GroupDescription {
                    state: "Dead".to_owned(),
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                });
            }
            if g.error_code != 0 {
                bail!(
                    "cannot describe group '{}': {}",
                    self.group,
                    explain_group(g.error_code, g.error_message.as_deref())
                );
            }
            let consumer = g.protocol_type.as_str() == "consumer";
            let members = g
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    assignment: if m.member_assignment.is_empty() {
                        Ok(Vec::new())
                    } else if consumer {
                        decode_assignment(&m.member_assignment).map(|a| a.partitions)
                    } else {
                        Err(format!(
                            "{} bytes of protocol type '{}'",
                            m.member_assignment.len(),
                            g.protocol_type
                        ))
                    },
                })
                .collect();
            return Ok(GroupDescription {
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
                protocol: g.protocol_data.to_string(),
                members,
            });
        }
    }

    /// OffsetFetch of every committed offset of the group: (topic, partition) -> offset.
    async fn committed(
        &mut self,
        cluster: &mut Cluster,
    ) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let version = self.connection.version::<OffsetFetchRequest>()?;
            if version < 2 {
                bail!(
                    "the broker at {} serves OffsetFetch only up to v{version}, which cannot list a group's offsets (v2+, Kafka 0.10.2+)",
                    self.connection.addr()
                );
            }
            let mut request = OffsetFetchRequest::default();
            if version >= 8 {
                request.groups = vec![
                    OffsetFetchRequestGroup::default()
                        .with_group_id(group_id(&self.group))
                        .with_topics(None),
                ];
            } else {
                request.group_id = group_id(&self.group);
                request.topics = None;
            }
            let response = self.connection.send_at(&request, version).await?;
            let mut offsets = BTreeMap::new();
            let mut partition_errors = Vec::new();
            let code = if version >= 8 {
                let g = response
                    .groups
                    .into_iter()
                    .find(|g| g.group_id.0.as_str() == self.group)
                    .context("OffsetFetch response does not mention the group")?;
                for t in g.topics {
                    for p in t.partitions {
                        let key = (t.name.0.to_string(), p.partition_index);
                        if p.error_code != 0 {
                            partition_errors.push((key, p.error_code));
                        } else if p.committed_offset >= 0 {
                            offsets.insert(key, p.committed_offset);
                        }
                    }
                }
                g.error_code
            } else {
                for t in response.topics {
                    for p in t.partitions {
                        let key = (t.name.0.to_string(), p.partition_index);
                        if p.error_code != 0 {
                            partition_errors.push((key, p.error_code));
                        } else if p.committed_offset >= 0 {
                            offsets.insert(key, p.committed_offset);
                        }
                    }
                }
                response.error_code
            };
            if coordinator_moving(code) && attempt < COORDINATOR_RETRIES_MAX {
                self.refind(cluster).await?;
                continue;
            }
            if code != 0 {
                bail!(
                    "cannot fetch the offsets of group '{}': {}",
                    self.group,
                    explain_group(code, None)
                );
            }
            for ((topic, partition), code) in partition_errors {
                eprintln!(
                    "warning: committed offset of {topic}-{partition}: {}",
                    explain_group(code, None)
                );
            }
            return Ok(offsets);
        }
    }

    /// OffsetCommit as an admin (generation -1, no member id): per partition, its error.
    async fn commit(
        &mut self,
        cluster: &mut Cluster,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> anyhow::Result<BTreeMap<(String, i32), i16>> {
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            by_topic.entry(topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_metadata(Some(StrBytes::from_static_str(""))),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::from_static_str(""))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = self.connection.send(&request).await?;
            let mut results = BTreeMap::new();
            for t in response.topics {
                for p in t.partitions {
                    results.insert((t.name.0.to_string(), p.partition_index), p.error_code);
                }
            }
            if results.values().any(|&code| coordinator_moving(code))
                && attempt < COORDINATOR_RETRIES_MAX
            {
                self.refind(cluster).await?;
                continue;
            }
            return Ok(results);
        }
    }

    /// DeleteGroups for this group: its error code.
    async fn delete(&mut self, cluster: &mut Cluster) -> anyhow::Result<i16> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request =
                DeleteGroupsRequest::default().with_groups_names(vec![group_id(&self.group)]);
            let response = self.connection.send(&request).await?;
            let result = response
                .results
                .into_iter()
                .find(|r| r.group_id.0.as_str() == self.group)
                .context("DeleteGroups response does not mention the group")?;
            if coordinator_moving(result.error_code) && attempt < COORDINATOR_RETRIES_MAX {
                self.refind(cluster).await?;
                continue;
            }
            return Ok(result.error_code);
        }
    }
}

/// What DescribeGroups says about a group.
struct GroupDescription {
    state: String,
    protocol_type: String,
    /// The selected protocol: the assignor (range, cooperative-sticky, ...) for consumers.
    protocol: String,
    members: Vec<MemberDescription>,
}

struct MemberDescription {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    host: String,
    /// Assigned (topic, partitions), or why they could not be decoded.
    assignment: Result<Vec<(String, Vec<i32>)>, String>,
}

impl GroupDescription {
    /// (topic, partition) -> the member it is assigned to.
    fn owners(&self) -> BTreeMap<(String, i32), &MemberDescription> {
        let mut owners = BTreeMap::new();
        for m in &self.members {
            if let Ok(assignment) = &m.assignment {
                for (topic, partitions) in assignment {
                    for &p in partitions {
                        owners.insert((topic.clone(), p), m);
                    }
                }
            }
        }
        owners
    }
}

/// A decoded ConsumerProtocolAssignment (the `consumer` protocol's SyncGroup payload).
#[derive(Debug, PartialEq)]
pub(crate) struct ConsumerAssignment {
    pub version: i16,
    pub partitions: Vec<(String, Vec<i32>)>,
    pub user_data: Option<Bytes>,
}

/// Decodes ConsumerProtocolAssignment: version (i16), then an array (i32 count) of
/// [topic (i16-length string), partitions (i32 count, i32 each)], then nullable user data
/// (i32 length, -1 for null). Versions 0-3 share this layout; a newer version is read as
/// its v3 prefix, as Kafka's own deserializer does. Counts are checked against the bytes
/// left, so a hostile payload cannot make us allocate more than its own size.
pub(crate) fn decode_assignment(bytes: &[u8]) -> Result<ConsumerAssignment, String> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.i16()?;
    if version < 0 {
        return Err(format!("negative assignment version {version}"));
    }
    let topics = r.count(6)?;
    let mut partitions = Vec::with_capacity(topics);
    for _ in 0..topics {
        let len = r.i16()?;
        let len = usize::try_from(len).map_err(|_| "null topic name".to_owned())?;
        let name = std::str::from_utf8(r.take(len)?)
            .map_err(|_| "topic name is not UTF-8".to_owned())?
            .to_owned();
        let n = r.count(4)?;
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            list.push(r.i32()?);
        }
        partitions.push((name, list));
    }
    let user_data = if r.at == bytes.len() {
        // Some clients leave user data out entirely.
        None
    } else {
        let len = r.i32()?;
        if len < 0 {
            None
        } else {
            Some(Bytes::copy_from_slice(r.take(len as usize)?))
        }
    };
    Ok(ConsumerAssignment {
        version,
        partitions,
        user_data,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("assignment truncated at byte {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    /// An array count whose elements take at least `element_min` bytes each.
    fn count(&mut self, element_min: usize) -> Result<usize, String> {
        let n = self.i32()?;
        let n = usize::try_from(n).unwrap_or(0); // null array: none
        if n.saturating_mul(element_min) > self.bytes.len() - self.at {
            return Err(format!(
                "array of {n} elements exceeds the assignment's size"
            ));
        }
        Ok(n)
    }
}

/// `topic(0,1,2) other(3)`.
fn assignment_text(assignment: &Result<Vec<(String, Vec<i32>)>, String>) -> String {
    match assignment {
        Ok(list) if list.iter().all(|(_, p)| p.is_empty()) => "-".to_owned(),
        Ok(list) => list
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(topic, partitions)| {
                let mut partitions = partitions.clone();
                partitions.sort_unstable();
                let ids: Vec<String> = partitions.iter().map(i32::to_string).collect();
                format!("{topic}({})", ids.join(","))
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(why) => format!("(not decoded: {why})"),
    }
}

/// Left-aligned columns two spaces apart, like kafka-consumer-groups.sh.
fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out
}

async fn list_groups(cluster: &mut Cluster, args: ListArgs) -> anyhow::Result<()> {
    let states: Option<Vec<String>> = match &args.states {
        None => None,
        Some(list) => Some(
            list.iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    GROUP_STATES
                        .iter()
                        .find(|known| known.eq_ignore_ascii_case(s.trim()))
                        .map(|known| (*known).to_owned())
                        .with_context(|| {
                            format!(
                                "unknown group state '{s}'; states: {}",
                                GROUP_STATES.join(", ")
                            )
                        })
                })
                .collect::<anyhow::Result<_>>()?,
        ),
    };
    let no_topics: &[String] = &[];
    let metadata = cluster.metadata(Some(no_topics), false).await?;
    let mut node_ids: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
    node_ids.sort_unstable();
    // group -> state ("" when unknown)
    let mut groups: BTreeMap<String, String> = BTreeMap::new();
    let mut failed = 0;
    for node in node_ids {
        let result = list_on_broker(cluster, node, states.as_deref()).await;
        match result {
            Ok(listed) => groups.extend(listed),
            Err(e) => {
                eprintln!("broker {node}: {e:#}");
                failed += 1;
            }
        }
    }
    if let Some(states) = &states {
        let rows: Vec<Vec<String>> = groups
            .into_iter()
            .filter(|(_, state)| states.is_empty() || states.contains(state))
            .map(|(g, s)| vec![g, s])
            .collect();
        for line in table(&["GROUP", "STATE"], &rows) {
            outln!("{line}")?;
        }
    } else {
        for name in groups.keys() {
            outln!("{name}")?;
        }
    }
    if failed > 0 {
        bail!("{failed} broker(s) could not list their groups; the list may be incomplete");
    }
    Ok(())
}

/// ListGroups on one broker (which lists the groups it coordinates): group -> state.
/// Before v4 there is no state in the answer; when states are wanted, DescribeGroups on
/// the same broker (their coordinator) supplies them.
async fn list_on_broker(
    cluster: &mut Cluster,
    node: i32,
    states: Option<&[String]>,
) -> anyhow::Result<Vec<(String, String)>> {
    let connection = cluster.broker(node).await?;
    let version = connection.version::<ListGroupsRequest>()?;
    let mut request = ListGroupsRequest::default();
    if version >= 4 {
        request.states_filter = states
            .unwrap_or_default()
            .iter()
            .map(|s| StrBytes::from_string(s.clone()))
            .collect();
    }
    let mut attempt = 0;
    let response = loop {
        attempt += 1;
        let response = connection.send_at(&request, version).await?;
        if response.error_code == ResponseError::CoordinatorLoadInProgress.code()
            && attempt < COORDINATOR_RETRIES_MAX
        {
            tokio::time::sleep(COORDINATOR_RETRY_BACKOFF).await;
            continue;
        }
        if response.error_code != 0 {
            bail!("ListGroups: {}", explain_group(response.error_code, None));
        }
        break response;
    };
    let mut out: Vec<(String, String)> = response
        .groups
        .into_iter()
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect();
    if version < 4 && states.is_some() && !out.is_empty() {
        let request = DescribeGroupsRequest::default()
            .with_groups(out.iter().map(|(g, _)| group_id(g)).collect());
        let described = connection.send(&request).await?;
        for (name, state) in &mut out {
            if let Some(d) = described
                .groups
                .iter()
                .find(|d| d.group_id.0.as_str() == name)
            {
                *state = d.group_state.to_string();
            }
        }
    }
    Ok(out)
}

/// One row of the lag table.
#[derive(Debug, PartialEq)]
struct LagRow {
    topic: String,
    partition: i32,
    current: Option<i64>,
    log_end: Result<i64, String>,
    owner: Option<(String, String, String)>,
}

impl LagRow {
    fn lag(&self) -> Option<i64> {
        match (self.current, &self.log_end) {
            (Some(current), Ok(end)) => Some((end - current).max(0)),
            _ => None,
        }
    }

    fn cells(&self) -> Vec<String> {
        let dash = || "-".to_owned();
        let (member, host, client) = self
            .owner
            .clone()
            .unwrap_or_else(|| (dash(), dash(), dash()));
        vec![
            self.topic.clone(),
            self.partition.to_string(),
            self.current.map_or_else(dash, |o| o.to_string()),
            match &self.log_end {
                Ok(end) => end.to_string(),
                Err(_) => dash(),
            },
            self.lag().map_or_else(dash, |l| l.to_string()),
            member,
            host,
            client,
        ]
    }
}

const LAG_HEADER: &[&str] = &[
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
];

/// The lag of every partition that has a committed offset or an owner.
async fn lag_rows(
    cluster: &mut Cluster,
    description: &GroupDescription,
    committed: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<Vec<LagRow>> {
    let owners = description.owners();
    let partitions: BTreeSet<(String, i32)> =
        committed.keys().chain(owners.keys()).cloned().collect();
    let ends = list_offsets(cluster, &partitions, LATEST_TIMESTAMP).await?;
    Ok(partitions
        .into_iter()
        .map(|key| LagRow {
            current: committed.get(&key).copied(),
            log_end: ends
                .get(&key)
                .cloned()
                .unwrap_or_else(|| Err("no answer".to_owned())),
            owner: owners
                .get(&key)
                .map(|m| (m.member_id.clone(), m.host.clone(), m.client_id.clone())),
            topic: key.0,
            partition: key.1,
        })
        .collect())
}

fn print_lag(group: &str, rows: &[LagRow]) -> anyhow::Result<()> {
    if rows.is_empty() {
        outln!("group '{group}' has no committed offsets and no assigned partitions")?;
        return Ok(());
    }
    let cells: Vec<Vec<String>> = rows.iter().map(LagRow::cells).collect();
    for line in table(LAG_HEADER, &cells) {
        outln!("{line}")?;
    }
    for row in rows {
        if let Err(e) = &row.log_end {
            eprintln!(
                "warning: log end offset of {}-{}: {e}",
                row.topic, row.partition
            );
        }
    }
    Ok(())
}

/// ListOffsets at `timestamp` for `partitions`, each asked of its leader:
/// (topic, partition) -> offset (-1 if no record is that recent) or why not.
async fn list_offsets(
    cluster: &mut Cluster,
    partitions: &BTreeSet<(String, i32)>,
    timestamp: i64,
) -> anyhow::Result<BTreeMap<(String, i32), Result<i64, String>>> {
    let mut out = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    let topics: Vec<String> = partitions
        .iter()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let metadata = cluster.metadata(Some(&topics), false).await?;
    // leader -> topic -> partitions
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for (topic, partition) in partitions {
        let t = metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic));
        let leader = match t {
            None => Err("topic not in the Metadata response".to_owned()),
            Some(t) if t.error_code != 0 => Err(explain(t.error_code, None)),
            Some(t) => match t
                .partitions
                .iter()
                .find(|p| p.partition_index == *partition)
            {
                None => Err("no such partition".to_owned()),
                Some(p) if p.leader_id.0 < 0 => Err("no leader".to_owned()),
                Some(p) => Ok(p.leader_id.0),
            },
        };
        match leader {
            Ok(leader) => by_leader
                .entry(leader)
                .or_default()
                .entry(topic.clone())
                .or_default()
                .push(*partition),
            Err(e) => {
                out.insert((topic.clone(), *partition), Err(e));
            }
        }
    }
    for (leader, topics) in by_leader {
        let mut request = ListOffsetsRequest::default().with_topics(
            topics
                .iter()
                .map(|(topic, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|&p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(p)
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
        // -1: a consumer, not a follower replica.
        request.replica_id = (-1).into();
        let response = match cluster.broker(leader).await {
            Ok(connection) => connection.send(&request).await,
            Err(e) => Err(e),
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                cluster.drop_broker(leader);
                for (topic, partitions) in &topics {
                    for &p in partitions {
                        out.insert((topic.clone(), p), Err(format!("{e:#}")));
                    }
                }
                continue;
            }
        };
        for (topic, partitions) in &topics {
            for &p in partitions {
                let answer = response
                    .topics
                    .iter()
                    .filter(|t| t.name.0.as_str() == topic)
                    .flat_map(|t| t.partitions.iter())
                    .find(|r| r.partition_index == p);
                let result = match answer {
                    None => Err("not in the ListOffsets response".to_owned()),
                    Some(r) if r.error_code != 0 => Err(explain(r.error_code, None)),
                    Some(r) => Ok(r.offset),
                };
                out.insert((topic.clone(), p), result);
            }
        }
    }
    Ok(out)
}

async fn describe_group(
    cluster: &mut Cluster,
    group: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut coordinator = Coordinator::find(cluster, group, timeout).await?;
    let description = coordinator.describe(cluster).await?;
    let committed = coordinator.committed(cluster).await?;
    if description.state == "Dead" && committed.is_empty() {
        bail!("group '{group}' does not exist");
    }
    let protocol_type = if description.protocol_type.is_empty() {
        "-"
    } else {
        &description.protocol_type
    };
    let protocol = if description.protocol.is_empty() {
        "-"
    } else {
        &description.protocol
    };
    outln!(
        "Group: {group}\tState: {}\tProtocolType: {protocol_type}\tAssignor: {protocol}\tMembers: {}\tCoordinator: {}",
        description.state,
        description.members.len(),
        coordinator.connection.addr()
    )?;
    if !description.members.is_empty() {
        outln!()?;
        let rows: Vec<Vec<String>> = description
            .members
            .iter()
            .map(|m| {
                let count = m
                    .assignment
                    .as_ref()
                    .map_or(0, |a| a.iter().map(|(_, p)| p.len()).sum::<usize>());
                vec![
                    m.member_id.clone(),
                    m.instance_id.clone().unwrap_or_else(|| "-".to_owned()),
                    m.host.clone(),
                    m.client_id.clone(),
                    count.to_string(),
                    assignment_text(&m.assignment),
                ]
            })
            .collect();
        let header = [
            "CONSUMER-ID",
            "GROUP-INSTANCE-ID",
            "HOST",
            "CLIENT-ID",
            "#PARTITIONS",
            "ASSIGNMENT",
        ];
        for line in table(&header, &rows) {
            outln!("{line}")?;
        }
    }
    outln!()?;
    let rows = lag_rows(cluster, &description, &committed).await?;
    print_lag(group, &rows)
}

async fn lag_command(cluster: &mut Cluster, group: &str, timeout: Duration) -> anyhow::Result<()> {
    let mut coordinator = Coordinator::find(cluster, group, timeout).await?;
    let description = coordinator.describe(cluster).await?;
    let committed = coordinator.committed(cluster).await?;
    if description.state == "Dead" && committed.is_empty() {
        bail!("group '{group}' does not exist");
    }
    let rows = lag_rows(cluster, &description, &committed).await?;
    print_lag(group, &rows)
}

/// Where `reset-offsets` moves the committed offsets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ResetTarget {
    Earliest,
    Latest,
    Offset(i64),
    /// Milliseconds since the epoch.
    Datetime(i64),
    ShiftBy(i64),
}

impl ResetTarget {
    fn from_args(args: &ResetArgs) -> ResetTarget {
        if args.to_earliest {
            ResetTarget::Earliest
        } else if args.to_latest {
            ResetTarget::Latest
        } else if let Some(offset) = args.to_offset {
            ResetTarget::Offset(offset)
        } else if let Some(ms) = args.to_datetime {
            ResetTarget::Datetime(ms)
        } else if let Some(n) = args.shift_by {
            ResetTarget::ShiftBy(n)
        } else {
            unreachable!("clap requires one target")
        }
    }
}

/// What is known about one partition when planning its reset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionOffsets {
    /// The group's committed offset, if any.
    pub current: Option<i64>,
    /// Log start offset.
    pub earliest: i64,
    /// Log end offset.
    pub latest: i64,
    /// For `--to-datetime`: the first offset at or after the time (None: none that recent).
    pub by_time: Option<i64>,
}

/// The new committed offset of one partition, as kafka-consumer-groups.sh computes it:
/// an explicit or shifted offset is clamped to [earliest, latest]; a time with no record
/// at or after it means the log end; shifting needs a committed offset to shift.
pub(crate) fn plan_offset(target: ResetTarget, p: PartitionOffsets) -> Result<i64, String> {
    let clamp = |o: i64| o.clamp(p.earliest, p.latest.max(p.earliest));
    Ok(match target {
        ResetTarget::Earliest => p.earliest,
        ResetTarget::Latest => p.latest,
        ResetTarget::Offset(o) => clamp(o),
        ResetTarget::Datetime(_) => p.by_time.map_or(p.latest, clamp),
        ResetTarget::ShiftBy(n) => match p.current {
            Some(current) => clamp(current.saturating_add(n)),
            None => return Err("no committed offset to shift".to_owned()),
        },
    })
}

async fn reset_offsets(
    cluster: &mut Cluster,
    args: ResetArgs,
    timeout: Duration,
) -> anyhow::Result<()> {
    let target = ResetTarget::from_args(&args);
    let group = args.group.as_str();
    let mut coordinator = Coordinator::find(cluster, group, timeout).await?;
    let description = coordinator.describe(cluster).await?;
    let committed = coordinator.committed(cluster).await?;
    let inactive = matches!(description.state.as_str(), "Empty" | "Dead");
    let refusal = || {
        format!(
            "group '{group}' is {} with {} member(s): offsets can only be reset while it has no members (Empty); stop its consumers and retry",
            description.state,
            description.members.len()
        )
    };
    if args.execute && !inactive {
        bail!("{}", refusal());
    }

    // Which partitions.
    let mut partitions: BTreeSet<(String, i32)> = BTreeSet::new();
    if args.all_topics {
        partitions.extend(committed.keys().cloned());
        if partitions.is_empty() {
            bail!("group '{group}' has no committed offsets; name the topics with --topic");
        }
    } else {
        let names: Vec<String> = args.topics.iter().map(|(t, _)| t.clone()).collect();
        let metadata = cluster.metadata(Some(&names), false).await?;
        for (topic, wanted) in &args.topics {
            let t = metadata
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
                .with_context(|| format!("Metadata response does not mention topic '{topic}'"))?;
            if t.error_code != 0 {
                bail!("topic '{topic}': {}", explain(t.error_code, None));
            }
            let existing: BTreeSet<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
            match wanted {
                None => partitions.extend(existing.iter().map(|&p| (topic.clone(), p))),
                Some(list) => {
                    for p in list {
                        if !existing.contains(p) {
                            bail!(
                                "topic '{topic}' has no partition {p} (it has {})",
                                existing.len()
                            );
                        }
                        partitions.insert((topic.clone(), *p));
                    }
                }
            }
        }
    }

    let earliest = list_offsets(cluster, &partitions, EARLIEST_TIMESTAMP).await?;
    let latest = list_offsets(cluster, &partitions, LATEST_TIMESTAMP).await?;
    let by_time = match target {
        ResetTarget::Datetime(ms) => Some(list_offsets(cluster, &partitions, ms).await?),
        _ => None,
    };
    let mut plan: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for key in &partitions {
        let lookup = |m: &BTreeMap<(String, i32), Result<i64, String>>| {
            m.get(key)
                .cloned()
                .unwrap_or_else(|| Err("no answer".to_owned()))
        };
        let offsets = (|| -> Result<PartitionOffsets, String> {
            Ok(PartitionOffsets {
                current: committed.get(key).copied(),
                earliest: lookup(&earliest)?,
                latest: lookup(&latest)?,
                by_time: match &by_time {
                    Some(m) => Some(lookup(m)?).filter(|&o| o >= 0),
                    None => None,
                },
            })
        })();
        match offsets.and_then(|o| plan_offset(target, o)) {
            Ok(new) => {
                rows.push(vec![
                    key.0.clone(),
                    key.1.to_string(),
                    committed
                        .get(key)
                        .map_or_else(|| "-".to_owned(), i64::to_string),
                    new.to_string(),
                ]);
                plan.insert(key.clone(), new);
            }
            Err(e) => problems.push(format!("{}-{}: {e}", key.0, key.1)),
        }
    }
    if !problems.is_empty() {
        bail!(
            "cannot plan the reset of group '{group}':\n  {}",
            problems.join("\n  ")
        );
    }
    for line in table(
        &["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
        &rows,
    ) {
        outln!("{line}")?;
    }
    if !args.execute {
        if inactive {
            outln!("dry run: nothing committed; add --execute to commit these offsets")?;
        } else {
            outln!(
                "dry run: nothing committed; --execute would be refused: {}",
                refusal()
            )?;
        }
        return Ok(());
    }
    let results = coordinator.commit(cluster, &plan).await?;
    let mut failed = 0;
    for key in plan.keys() {
        match results.get(key) {
            Some(0) => {}
            Some(&code) => {
                eprintln!("{}-{}: {}", key.0, key.1, explain_group(code, None));
                failed += 1;
            }
            None => {
                eprintln!("{}-{}: not in the OffsetCommit response", key.0, key.1);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} offset(s) were not committed", plan.len());
    }
    outln!(
        "committed new offsets for {} partition(s) of group '{group}'",
        plan.len()
    )?;
    Ok(())
}

async fn delete_groups(
    cluster: &mut Cluster,
    args: DeleteArgs,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for group in &args.groups {
        let result = async {
            let mut coordinator = Coordinator::find(cluster, group, timeout).await?;
            coordinator.delete(cluster).await
        }
        .await;
        match result {
            Ok(0) => outln!("deleted group '{group}'")?,
            Ok(code) => {
                eprintln!(
                    "cannot delete group '{group}': {}",
                    explain_group(code, None)
                );
                failed += 1;
            }
            Err(e) => {
                eprintln!("cannot delete group '{group}': {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} group(s) were not deleted");
    }
    Ok(())
}

/// `TOPIC` or `TOPIC:0,1,2`.
fn parse_topic_partitions(s: &str) -> Result<(String, Option<Vec<i32>>), String> {
    match s.rsplit_once(':') {
        None if !s.is_empty() => Ok((s.to_owned(), None)),
        Some((topic, list)) if !topic.is_empty() => {
            let partitions = list
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|&p| p >= 0)
                        .ok_or_else(|| format!("'{p}' is not a partition number"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((topic.to_owned(), Some(partitions)))
        }
        _ => Err(format!("'{s}' is not TOPIC or TOPIC:PARTITION,...")),
    }
}

/// Parses an RFC 3339 time (`2026-11-30T12:00:00Z`, `2026-11-30T13:00:00.250+01:00`)
/// into milliseconds since the Unix epoch.
pub(crate) fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let bad = || format!("'{s}' is not an RFC 3339 time such as 2026-11-30T12:00:00Z");
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = &s[range];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        millis = padded.parse::<i64>().map_err(|_| bad())?;
        rest = &frac[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let hh: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let mm: i64 = rest[4..6].parse().map_err(|_| bad())?;
            if hh > 23 || mm > 59 {
                return Err(bad());
            }
            sign * (hh * 60 + mm)
        }
        _ => return Err(bad()),
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn encode(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_i16(version);
        out.put_i32(topics.len() as i32);
        for (name, partitions) in topics {
            out.put_i16(name.len() as i16);
            out.put_slice(name.as_bytes());
            out.put_i32(partitions.len() as i32);
            for &p in *partitions {
                out.put_i32(p);
            }
        }
        match user_data {
            None => out.put_i32(-1),
            Some(d) => {
                out.put_i32(d.len() as i32);
                out.put_slice(d);
            }
        }
        out
    }

    #[test]
    fn decodes_consumer_protocol_assignments() {
        let bytes = encode(0, &[("orders", &[0, 2]), ("audit", &[5])], None);
        assert_eq!(
            decode_assignment(&bytes).unwrap(),
            ConsumerAssignment {
                version: 0,
                partitions: vec![("orders".into(), vec![0, 2]), ("audit".into(), vec![5])],
                user_data: None,
            }
        );
        let bytes = encode(3, &[("t", &[1])], Some(b"sticky"));
        let a = decode_assignment(&bytes).unwrap();
        assert_eq!(a.version, 3);
        assert_eq!(a.user_data.as_deref(), Some(&b"sticky"[..]));
        // No topics (a member with nothing assigned), and user data left out entirely.
        let mut bytes = encode(1, &[], None);
        bytes.truncate(6);
        assert_eq!(decode_assignment(&bytes).unwrap().partitions, []);
        // A newer version is read as its known prefix; trailing fields are ignored.
        let mut bytes = encode(4, &[("t", &[7])], Some(b""));
        bytes.extend_from_slice(&[0, 0, 0, 9]);
        assert_eq!(
            decode_assignment(&bytes).unwrap().partitions,
            [("t".to_owned(), vec![7])]
        );
    }

    #[test]
    fn rejects_malformed_assignments_without_allocating() {
        assert!(decode_assignment(&[]).is_err());
        assert!(decode_assignment(&[0, 0, 0]).is_err());
        assert!(
            decode_assignment(&[0xff, 0xff, 0, 0, 0, 0]).is_err(),
            "negative version"
        );
        // A huge topic count in a tiny payload.
        assert!(decode_assignment(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err());
        // A huge partition count.
        let mut bytes = vec![0, 0, 0, 0, 0, 1, 0, 1, b't'];
        bytes.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(decode_assignment(&bytes).is_err());
        // Truncated in the middle of a topic name, and of the user data.
        let full = encode(0, &[("orders", &[1])], Some(b"abc"));
        for cut in [8, full.len() - 1] {
            assert!(decode_assignment(&full[..cut]).is_err(), "cut at {cut}");
        }
        // Not UTF-8.
        let bytes = [0, 0, 0, 0, 0, 1, 0, 1, 0xff, 0, 0, 0, 0];
        assert!(decode_assignment(&bytes).is_err());
    }

    #[test]
    fn assignment_text_is_kafkas() {
        let a = Ok(vec![("b".to_owned(), vec![2, 0]), ("a".to_owned(), vec![])]);
        assert_eq!(assignment_text(&a), "b(0,2)");
        assert_eq!(assignment_text(&Ok(vec![])), "-");
    }

    fn p(current: Option<i64>, earliest: i64, latest: i64) -> PartitionOffsets {
        PartitionOffsets {
            current,
            earliest,
            latest,
            by_time: None,
        }
    }

    #[test]
    fn reset_plans() {
        use ResetTarget::*;
        let part = p(Some(50), 10, 100);
        assert_eq!(plan_offset(Earliest, part), Ok(10));
        assert_eq!(plan_offset(Latest, part), Ok(100));
        assert_eq!(plan_offset(Offset(42), part), Ok(42));
        assert_eq!(plan_offset(Offset(5), part), Ok(10), "below the log start");
        assert_eq!(
            plan_offset(Offset(500), part),
            Ok(100),
            "beyond the log end"
        );
        assert_eq!(plan_offset(ShiftBy(-20), part), Ok(30));
        assert_eq!(plan_offset(ShiftBy(-45), part), Ok(10));
        assert_eq!(plan_offset(ShiftBy(70), part), Ok(100));
        assert_eq!(plan_offset(ShiftBy(i64::MAX), part), Ok(100));
        assert!(plan_offset(ShiftBy(1), p(None, 0, 10)).is_err());
        assert_eq!(plan_offset(Earliest, p(None, 0, 0)), Ok(0), "empty log");
        let timed = PartitionOffsets {
            by_time: Some(77),
            ..part
        };
        assert_eq!(plan_offset(Datetime(0), timed), Ok(77));
        assert_eq!(
            plan_offset(Datetime(0), part),
            Ok(100),
            "no record that recent: the log end"
        );
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_ms("2026-11-30T12:00:00Z"),
            Ok(1_796_040_000_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-30T13:00:00.25+01:00"),
            Ok(1_796_040_000_250)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29t00:00:00-00:30"),
            Ok(951_784_200_000)
        );
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999Z"), Ok(-1));
        for bad in [
            "2026-11-30",
            "2026-11-30T12:00:00",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-30T24:00:00Z",
            "2026-11-30T12:00:00.Z",
            "2026-11-30T12:00:00+1:00",
            "2026-1a-30T12:00:00Z",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_partitions() {
        assert_eq!(parse_topic_partitions("t"), Ok(("t".into(), None)));
        assert_eq!(
            parse_topic_partitions("t:0,2"),
            Ok(("t".into(), Some(vec![0, 2])))
        );
        assert!(parse_topic_partitions("t:").is_err());
        assert!(parse_topic_partitions(":1").is_err());
        assert!(parse_topic_partitions("t:-1").is_err());
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        group: GroupArgs,
    }

    fn parse(args: &[&str]) -> Result<GroupCommand, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("group").chain(args.iter().copied()))
            .map(|cli| cli.group.command)
    }

    #[test]
    fn flags() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let GroupCommand::List(list) = parse(&["list"]).unwrap() else {
            panic!()
        };
        assert_eq!(list.states, None);
        let GroupCommand::List(list) = parse(&["list", "--state"]).unwrap() else {
            panic!()
        };
        assert_eq!(list.states, Some(vec![]));
        let GroupCommand::List(list) = parse(&["list", "--state", "Stable,Empty"]).unwrap() else {
            panic!()
        };
        assert_eq!(list.states, Some(vec!["Stable".into(), "Empty".into()]));
        let GroupCommand::ResetOffsets(r) =
            parse(&["reset-offsets", "g", "--topic", "t:1", "--shift-by", "-5"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(ResetTarget::from_args(&r), ResetTarget::ShiftBy(-5));
        assert_eq!(r.topics, [("t".to_owned(), Some(vec![1]))]);
        assert!(!r.execute);
        assert!(
            parse(&["reset-offsets", "g", "--topic", "t"]).is_err(),
            "a target is required"
        );
        assert!(
            parse(&["reset-offsets", "g", "--to-earliest"]).is_err(),
            "topics are required"
        );
        assert!(
            parse(&[
                "reset-offsets",
                "g",
                "--all-topics",
                "--to-latest",
                "--to-earliest"
            ])
            .is_err()
        );
        assert!(parse(&["reset-offsets", "g", "--all-topics", "--to-offset", "-1"]).is_err());
        assert!(parse(&["delete"]).is_err());
    }

    /// A broker from before KIP-699/709/1043 (FindCoordinator v3, OffsetFetch v5,
    /// ListGroups v3, DescribeGroups v2): the single-key, single-group request shapes,
    /// a retried COORDINATOR_NOT_AVAILABLE, and states filled in by DescribeGroups.
    #[tokio::test]
    async fn works_with_an_older_broker() {
        use bytes::{BufMut, BytesMut};
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        use kafka_protocol::messages::describe_groups_response::{
            DescribedGroup, DescribedGroupMember,
        };
        use kafka_protocol::messages::list_groups_response::ListedGroup;
        use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
        use kafka_protocol::messages::offset_fetch_response::{
            OffsetFetchResponsePartition, OffsetFetchResponseTopic,
        };
        use kafka_protocol::messages::{
            ApiKey, ApiVersionsResponse, BrokerId, DescribeGroupsResponse, FindCoordinatorResponse,
            ListGroupsResponse, MetadataResponse, OffsetFetchResponse, RequestHeader,
            ResponseHeader,
        };
        use kafka_protocol::protocol::{Decodable, Encodable};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let find_calls = Arc::new(AtomicUsize::new(0));
        let calls = find_calls.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let calls = calls.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok(size) = socket.read_i32().await else {
                            return;
                        };
                        let mut frame = vec![0u8; size as usize];
                        socket.read_exact(&mut frame).await.unwrap();
                        let mut frame = Bytes::from(frame);
                        let key = i16::from_be_bytes([frame[0], frame[1]]);
                        let version = i16::from_be_bytes([frame[2], frame[3]]);
                        let api = ApiKey::try_from(key).unwrap();
                        let header =
                            RequestHeader::decode(&mut frame, api.request_header_version(version))
                                .unwrap();
                        let mut out = BytesMut::new();
                        out.put_i32(0);
                        ResponseHeader::default()
                            .with_correlation_id(header.correlation_id)
                            .encode(&mut out, api.response_header_version(version))
                            .unwrap();
                        let range = |key: ApiKey, max: i16| {
                            ApiVersion::default()
                                .with_api_key(key as i16)
                                .with_min_version(0)
                                .with_max_version(max)
                        };
                        match api {
                            ApiKey::ApiVersions => ApiVersionsResponse::default()
                                .with_api_keys(vec![
                                    range(ApiKey::ApiVersions, 3),
                                    range(ApiKey::Metadata, 8),
                                    range(ApiKey::FindCoordinator, 3),
                                    range(ApiKey::DescribeGroups, 2),
                                    range(ApiKey::OffsetFetch, 5),
                                    range(ApiKey::ListGroups, 3),
                                ])
                                .encode(&mut out, version),
                            ApiKey::Metadata => MetadataResponse::default()
                                .with_brokers(vec![
                                    MetadataResponseBroker::default()
                                        .with_node_id(BrokerId(1))
                                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                                        .with_port(i32::from(addr.port())),
                                ])
                                .encode(&mut out, version),
                            ApiKey::FindCoordinator => {
                                let request =
                                    FindCoordinatorRequest::decode(&mut frame, version).unwrap();
                                assert_eq!(request.key.as_str(), "g");
                                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                                FindCoordinatorResponse::default()
                                    .with_error_code(if first {
                                        ResponseError::CoordinatorNotAvailable.code()
                                    } else {
                                        0
                                    })
                                    .with_node_id(BrokerId(1))
                                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                                    .with_port(i32::from(addr.port()))
                                    .encode(&mut out, version)
                            }
                            ApiKey::DescribeGroups => {
                                let request =
                                    DescribeGroupsRequest::decode(&mut frame, version).unwrap();
                                let assignment = encode(0, &[("t", &[0, 1])], None);
                                DescribeGroupsResponse::default()
                                    .with_groups(
                                        request
                                            .groups
                                            .into_iter()
                                            .map(|g| {
                                                DescribedGroup::default()
                                                    .with_group_id(g)
                                                    .with_group_state(StrBytes::from_static_str(
                                                        "Stable",
                                                    ))
                                                    .with_protocol_type(StrBytes::from_static_str(
                                                        "consumer",
                                                    ))
                                                    .with_protocol_data(StrBytes::from_static_str(
                                                        "range",
                                                    ))
                                                    .with_members(vec![
                                                        DescribedGroupMember::default()
                                                            .with_member_id(
                                                                StrBytes::from_static_str("m-1"),
                                                            )
                                                            .with_client_id(
                                                                StrBytes::from_static_str("c"),
                                                            )
                                                            .with_client_host(
                                                                StrBytes::from_static_str("/h"),
                                                            )
                                                            .with_member_assignment(Bytes::from(
                                                                assignment.clone(),
                                                            )),
                                                    ])
                                            })
                                            .collect(),
                                    )
                                    .encode(&mut out, version)
                            }
                            ApiKey::OffsetFetch => {
                                let request =
                                    OffsetFetchRequest::decode(&mut frame, version).unwrap();
                                assert_eq!(request.group_id.0.as_str(), "g");
                                assert_eq!(request.topics, None, "all topics");
                                let partition = |p: i32, offset: i64| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                };
                                OffsetFetchResponse::default()
                                    .with_topics(vec![
                                        OffsetFetchResponseTopic::default()
                                            .with_name(topic_name("t"))
                                            .with_partitions(vec![
                                                partition(0, 5),
                                                partition(1, -1),
                                            ]),
                                    ])
                                    .encode(&mut out, version)
                            }
                            ApiKey::ListGroups => {
                                let request =
                                    ListGroupsRequest::decode(&mut frame, version).unwrap();
                                assert!(request.states_filter.is_empty());
                                ListGroupsResponse::default()
                                    .with_groups(vec![
                                        ListedGroup::default()
                                            .with_group_id(group_id("g"))
                                            .with_protocol_type(StrBytes::from_static_str(
                                                "consumer",
                                            )),
                                    ])
                                    .encode(&mut out, version)
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                        .unwrap();
                        let size = (out.len() - 4) as i32;
                        out[..4].copy_from_slice(&size.to_be_bytes());
                        socket.write_all(&out).await.unwrap();
                    }
                });
            }
        });

        let timeout = Duration::from_secs(5);
        let mut cluster = Cluster::connect(&addr.to_string(), timeout).await.unwrap();
        let mut coordinator = Coordinator::find(&mut cluster, "g", timeout).await.unwrap();
        assert_eq!(find_calls.load(Ordering::SeqCst), 2, "retried once");
        let description = coordinator.describe(&mut cluster).await.unwrap();
        assert_eq!(description.state, "Stable");
        assert_eq!(description.protocol, "range");
        assert_eq!(
            description.members[0].assignment,
            Ok(vec![("t".to_owned(), vec![0, 1])])
        );
        let committed = coordinator.committed(&mut cluster).await.unwrap();
        assert_eq!(
            committed.into_iter().collect::<Vec<_>>(),
            [(("t".to_owned(), 0), 5)],
            "-1 means no committed offset"
        );
        let no_topics: &[String] = &[];
        cluster.metadata(Some(no_topics), false).await.unwrap();
        let listed = list_on_broker(&mut cluster, 1, Some(&["Stable".to_owned()]))
            .await
            .unwrap();
        assert_eq!(listed, [("g".to_owned(), "Stable".to_owned())]);
    }

    #[test]
    fn lag_rows_and_table() {
        let row = LagRow {
            topic: "t".into(),
            partition: 0,
            current: Some(3),
            log_end: Ok(10),
            owner: None,
        };
        assert_eq!(row.lag(), Some(7));
        assert_eq!(row.cells(), ["t", "0", "3", "10", "7", "-", "-", "-"]);
        let unowned = LagRow {
            current: None,
            ..row
        };
        assert_eq!(unowned.lag(), None);
        let lines = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(lines, ["A    BB", "xyz  1"]);
    }
}
